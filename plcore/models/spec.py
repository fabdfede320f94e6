"""JSON model specifications: the schema, its validation, and ``load_spec_model``.

Two forms, told apart by ``"type"`` (a pydantic discriminated union, :class:`ModelSpec`):

``"mlp"`` -- the shorthand of CONTRACT.md::

    {"type": "mlp", "input_dim": 8, "widths": [512, 512], "output_dim": 1,
     "activation": "tanh", "output_activation": null,
     "parameterization": "ntk", "weight_std": 1.0, "bias_std": 0.1, "bias": true, "seed": 0}

It builds ``nn.Sequential(Dense, Activation, Dense, Activation, ..., Dense[, Activation])``;
``widths: []`` is a linear model. ``input_dim``, ``widths`` and ``output_dim`` are required; the
defaults are ``activation: "tanh"``, ``output_activation: null``, ``parameterization: "ntk"``,
``weight_std: 1.0``, ``bias_std: 0.1``, ``bias: true``, ``seed: 0``.
Parameter names (the keys of explicit weights) are
``"0.weight", "0.bias", "2.weight", "2.bias", ...`` (the Dense layers sit at even indices).

``"layers"`` -- a layer list for small CNNs and residual blocks::

    {"type": "layers", "input_shape": [1, 8, 8], "output_dim": 1, "seed": 0,
     "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
                {"type": "activation", "name": "tanh"},
                {"type": "avgpool2d", "kernel_size": 2},
                {"type": "residual", "layers": [{"type": "layernorm"}, ...]},
                {"type": "flatten"}, {"type": "linear", "out": 1}]}

Layer ``i`` of the list is module ``i`` of the ``nn.Sequential``, so its parameters are named
``"{i}.weight"``, ``"{i}.bias"`` (linear, conv2d), ``"{i}.scale.weight"``, ``"{i}.shift.bias"``
(layernorm) and ``"{i}.block.{j}...."`` inside a residual block. :func:`parameter_names` lists
them with their shapes.

Initialisation (both forms), from one ``torch.Generator`` seeded with ``seed``, float64, drawn in
module order (depth first): for every linear / conv2d layer its weight, then its bias (if any).

* ``"ntk"``: every entry of W and b is N(0, 1); the layer computes
  ``(weight_std / sqrt(fan_in)) * W h + bias_std * b`` (fan_in = in features, or
  C_in * kh * kw for a convolution). This is the NTK parameterization of CONTRACT.md.
* ``"standard"``: PyTorch's default ``nn.Linear`` / ``nn.Conv2d`` initialisation,
  W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming-uniform with a = sqrt(5) gives exactly this
  bound for W), scales 1. ``weight_std`` / ``bias_std`` do not apply and must keep their defaults.

Layernorm affine parameters start at gamma = 1, beta = 0 and draw nothing.

Caps: at most :data:`MAX_LAYERS` layers (Dense layers for an MLP; all entries, nested ones
included, for a layer list) and :data:`MAX_PARAMS` parameters; any violation is a
:class:`~plcore.errors.ModelSpecError` naming each bad field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

import torch
from pydantic import ValidationError

from plcore.errors import ModelSpecError
from plcore.models.base import Model
from plcore.models.spec_schema import (
    MAX_LAYERS,
    MAX_PARAMS,
    NONSMOOTH_ACTIVATIONS,
    ActivationLayer,
    ActivationName,
    AnySpec,
    AvgPool2dLayer,
    Conv2dLayer,
    FlattenLayer,
    GlobalAvgPoolLayer,
    LayerItem,
    LayerNormLayer,
    LayersSpec,
    LinearLayer,
    MLPSpec,
    ModelSpec,
    ResidualLayer,
)

_UNION_TAGS: Final = frozenset({"mlp", "layers"})
_LAYER_TAGS: Final = frozenset(
    {"linear", "conv2d", "avgpool2d", "global_avgpool", "flatten", "layernorm", "activation"}
    | {"residual"}
)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    # Pydantic puts the discriminator tag into the location ("mlp", "layers", 2, "conv2d", ...);
    # users think in JSON paths, so drop the tags.
    parts: list[str] = []
    for i, part in enumerate(loc):
        if i == 0 and part in _UNION_TAGS:
            continue
        if i > 0 and isinstance(loc[i - 1], int) and part in _LAYER_TAGS:
            continue
        parts.append(str(part))
    return ".".join(parts)


def format_validation_error(exc: ValidationError) -> str:
    """One readable line per problem: ``"widths.1: Input should be greater than 0"``."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        if err["type"] == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
        else:
            msg = err["msg"]
            value = err.get("input")
            if err["type"] != "missing" and isinstance(value, str | int | float | bool):
                msg = f"{msg} (got {value!r})"
        where = _format_loc(tuple(err["loc"]))
        lines.append(f"{where}: {msg}" if where else msg)
    return "; ".join(lines)


def validate_spec(spec: Mapping[str, Any] | ModelSpec | AnySpec) -> AnySpec:
    """Validate a spec; raise :class:`ModelSpecError` listing every bad field."""
    if isinstance(spec, ModelSpec):
        return spec.root
    if isinstance(spec, MLPSpec | LayersSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise ModelSpecError(f"model spec must be a JSON object, got {type(spec).__name__}")
    try:
        return ModelSpec.model_validate(dict(spec)).root
    except ValidationError as exc:
        raise ModelSpecError(f"model spec invalid: {format_validation_error(exc)}") from exc


def canonical_json(spec: AnySpec) -> bytes:
    """The validated spec as canonical JSON (sorted keys, no spaces): what ``sha256`` hashes."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def parameter_shapes(spec: Mapping[str, Any] | AnySpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every trainable parameter, in the order of ``Model.named_params()``."""
    from plcore.models.spec_build import build_module

    module = build_module(validate_spec(spec), generator=None)
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


def parameter_names(spec: Mapping[str, Any] | AnySpec) -> list[str]:
    """The parameter names that explicit weights must use (see :func:`parameter_shapes`)."""
    return list(parameter_shapes(spec))


def with_widths(spec: Mapping[str, Any], widths: list[int]) -> dict[str, Any]:
    """The same MLP spec with other hidden widths (validated; for width extrapolation)."""
    parsed = validate_spec(spec)
    if not isinstance(parsed, MLPSpec):
        raise ModelSpecError(f"with_widths needs an 'mlp' spec, got type {parsed.type!r}")
    data = parsed.model_dump(mode="json")
    data["widths"] = list(widths)
    return validate_spec(data).model_dump(mode="json")


def describe_spec(spec: Mapping[str, Any] | AnySpec) -> str:
    """A one-line description: ``"MLP 8-512-1 tanh (ntk)"`` (the report's model_description)."""
    return _describe(validate_spec(spec))


def _describe(spec: AnySpec) -> str:
    if isinstance(spec, MLPSpec):
        dims = "-".join(str(d) for d in [spec.input_dim, *spec.widths, spec.output_dim])
        act = spec.activation if spec.widths else "linear"
        out = f", output {spec.output_activation}" if spec.output_activation else ""
        return f"MLP {dims} {act}{out} ({spec.parameterization})"
    kinds = "-".join(
        item.name if isinstance(item, ActivationLayer) else item.type for item in spec.layers
    )
    shape = "x".join(str(s) for s in spec.input_shape)
    return f"layers {shape} {kinds} -> {spec.output_dim} ({spec.parameterization})"


def _used_activations(spec: AnySpec) -> tuple[str, ...]:
    names: list[str] = []
    if isinstance(spec, MLPSpec):
        if spec.widths:
            names.append(spec.activation)
        if spec.output_activation is not None:
            names.append(spec.output_activation)
    else:

        def walk(items: list[Any]) -> None:
            for item in items:
                if isinstance(item, ActivationLayer):
                    names.append(item.name)
                elif isinstance(item, ResidualLayer):
                    walk(item.layers)

        walk(spec.layers)
    return tuple(dict.fromkeys(names))


def _output_activation(spec: AnySpec) -> str | None:
    if isinstance(spec, MLPSpec):
        return spec.output_activation
    last = spec.layers[-1]
    return last.name if isinstance(last, ActivationLayer) else None


def load_spec_model(
    spec: Mapping[str, Any] | ModelSpec | AnySpec, *, weights: bytes | None = None
) -> Model:
    """Validate a JSON spec and build the model (float64, eval mode, seeded initialisation).

    Args:
        spec: the JSON object (see the module docstring), or an already parsed ModelSpec.
        weights: optional explicit parameters, bytes of a ``.safetensors`` or ``.npz`` file whose
            keys are :func:`parameter_names` (shapes from :func:`parameter_shapes`).

    ``Model.sha256`` is the SHA-256 of :func:`canonical_json`; with explicit weights it is the
    SHA-256 of ``canonical_json + b"\\n" + sha256(weights).hexdigest()`` so that the digest names
    the actual function.

    Raises:
        ModelSpecError: invalid spec or weights.
    """
    from plcore.models.spec_build import build_module
    from plcore.models.weights import load_weights_into

    parsed = validate_spec(spec)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(parsed.seed)
    module = build_module(parsed, generator=generator)
    canon = canonical_json(parsed)
    metadata: dict[str, Any] = {}
    digest = hashlib.sha256(canon)
    if weights is not None:
        fmt = load_weights_into(module, weights)
        weights_sha = hashlib.sha256(weights).hexdigest()
        metadata.update(weights_format=fmt, weights_sha256=weights_sha)
        digest = hashlib.sha256(canon + b"\n" + weights_sha.encode())
    module.eval()
    activations = _used_activations(parsed)
    nonsmooth = tuple(a for a in activations if a in NONSMOOTH_ACTIVATIONS)
    input_shape = (parsed.input_dim,) if isinstance(parsed, MLPSpec) else tuple(parsed.input_shape)
    return Model(
        module=module,
        input_shape=input_shape,
        output_dim=parsed.output_dim,
        format="json",
        sha256=digest.hexdigest(),
        activations=activations,
        smooth=not nonsmooth,
        nonsmooth_ops=nonsmooth,
        output_activation=_output_activation(parsed),
        spec=parsed.model_dump(mode="json"),
        description=_describe(parsed),
        metadata=metadata,
    )


__all__ = [
    "MAX_LAYERS",
    "MAX_PARAMS",
    "ActivationLayer",
    "ActivationName",
    "AnySpec",
    "AvgPool2dLayer",
    "Conv2dLayer",
    "FlattenLayer",
    "GlobalAvgPoolLayer",
    "LayerItem",
    "LayerNormLayer",
    "LayersSpec",
    "LinearLayer",
    "MLPSpec",
    "ModelSpec",
    "ResidualLayer",
    "canonical_json",
    "format_validation_error",
    "load_spec_model",
    "parameter_names",
    "parameter_shapes",
    "validate_spec",
    "with_widths",
]
