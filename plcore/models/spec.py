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
import itertools
import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

import torch
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    model_validator,
)

from plcore.errors import ModelSpecError
from plcore.models.base import Model

MAX_LAYERS: Final = 64
MAX_PARAMS: Final = 50_000_000
MAX_WIDTH: Final = 1_000_000
MAX_VALUES_PER_SAMPLE: Final = 16_000_000
"""Largest per-sample output of any layer (C*H*W); bounds the memory of a forward pass."""

ActivationName = Literal[
    "identity", "tanh", "erf", "sigmoid", "softplus", "gelu", "silu", "sin", "relu"
]
Parameterization = Literal["ntk", "standard"]
NONSMOOTH_ACTIVATIONS: Final = frozenset({"relu"})

_Width = Annotated[int, Field(ge=1, le=MAX_WIDTH, strict=True)]
_Small = Annotated[int, Field(ge=1, le=64, strict=True)]
_SmallOrZero = Annotated[int, Field(ge=0, le=64, strict=True)]


def _int_to_pair(value: Any) -> Any:
    return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


_Pair = Annotated[
    tuple[_Small, _Small],
    BeforeValidator(_int_to_pair, json_schema_input_type=int | tuple[int, int]),
]
_PairOrZero = Annotated[
    tuple[_SmallOrZero, _SmallOrZero],
    BeforeValidator(_int_to_pair, json_schema_input_type=int | tuple[int, int]),
]
_Seed = Annotated[
    int, Field(ge=0, lt=2**63, strict=True, description="Seed of the torch.Generator.")
]
_WeightStd = Annotated[
    float, Field(gt=0, allow_inf_nan=False, description="sigma_w of the NTK parameterization.")
]
_BiasStd = Annotated[
    float, Field(ge=0, allow_inf_nan=False, description="sigma_b of the NTK parameterization.")
]
_DEFAULT_WEIGHT_STD: Final = 1.0
_DEFAULT_BIAS_STD: Final = 0.1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MLPSpec(_Strict):
    """A fully connected network input_dim -> widths... -> output_dim (see module docstring)."""

    type: Literal["mlp"]
    input_dim: _Width
    widths: list[_Width] = Field(max_length=MAX_LAYERS - 1, description="Hidden widths.")
    output_dim: _Width
    activation: ActivationName = "tanh"
    output_activation: ActivationName | None = None
    parameterization: Parameterization = "ntk"
    weight_std: _WeightStd = _DEFAULT_WEIGHT_STD
    bias_std: _BiasStd = _DEFAULT_BIAS_STD
    bias: bool = True
    seed: _Seed = 0

    @model_validator(mode="after")
    def _check(self) -> MLPSpec:
        _check_standard_scales(self.parameterization, self.weight_std, self.bias_std)
        dims = [self.input_dim, *self.widths, self.output_dim]
        m = sum(a * b + (b if self.bias else 0) for a, b in itertools.pairwise(dims))
        _check_param_cap(m)
        return self


class LinearLayer(_Strict):
    """Dense layer on a flat (n, d) input; ``out`` output features."""

    type: Literal["linear"]
    out: _Width
    bias: bool = True


class Conv2dLayer(_Strict):
    """2-D convolution on an (n, C, H, W) input (no dilation, no groups)."""

    type: Literal["conv2d"]
    out_channels: Annotated[int, Field(ge=1, le=100_000, strict=True)]
    kernel_size: _Pair = Field(description="An int or [kh, kw].")
    stride: _Pair = (1, 1)
    padding: _PairOrZero = (0, 0)
    bias: bool = True


class AvgPool2dLayer(_Strict):
    """Average pooling without padding; ``stride`` defaults to ``kernel_size``."""

    type: Literal["avgpool2d"]
    kernel_size: _Pair = Field(description="An int or [kh, kw].")
    stride: _Pair | None = None


class GlobalAvgPoolLayer(_Strict):
    """Mean over H and W: (n, C, H, W) -> (n, C)."""

    type: Literal["global_avgpool"]


class FlattenLayer(_Strict):
    """(n, ...) -> (n, prod(...))."""

    type: Literal["flatten"]


class LayerNormLayer(_Strict):
    """(x - mean) / sqrt(var + eps) over the last axis (flat input) or over C, H, W (images)."""

    type: Literal["layernorm"]
    elementwise_affine: bool = True
    eps: float = Field(1e-5, gt=0, allow_inf_nan=False)


class ActivationLayer(_Strict):
    """Elementwise activation (a name from ``plcore.models.layers.ACTIVATIONS``)."""

    type: Literal["activation"]
    name: ActivationName


class ResidualLayer(_Strict):
    """x + block(x); the block must keep the shape."""

    type: Literal["residual"]
    layers: list[LayerItem] = Field(min_length=1)


LayerItem = Annotated[
    LinearLayer
    | Conv2dLayer
    | AvgPool2dLayer
    | GlobalAvgPoolLayer
    | FlattenLayer
    | LayerNormLayer
    | ActivationLayer
    | ResidualLayer,
    Field(discriminator="type"),
]
ResidualLayer.model_rebuild()


class LayersSpec(_Strict):
    """A general layer list (see module docstring)."""

    type: Literal["layers"]
    input_shape: list[Annotated[int, Field(ge=1, le=10_000_000, strict=True)]] = Field(
        description="Shape of one sample: [d] or [C, H, W]."
    )
    output_dim: _Width
    layers: list[LayerItem] = Field(min_length=1)
    parameterization: Parameterization = "ntk"
    weight_std: _WeightStd = _DEFAULT_WEIGHT_STD
    bias_std: _BiasStd = _DEFAULT_BIAS_STD
    seed: _Seed = 0

    @model_validator(mode="after")
    def _check(self) -> LayersSpec:
        if len(self.input_shape) not in (1, 3):
            raise ValueError(
                f"input_shape must be [d] or [C, H, W], got {self.input_shape} "
                f"({len(self.input_shape)} entries)"
            )
        if math.prod(self.input_shape) > MAX_VALUES_PER_SAMPLE:
            raise ValueError(
                f"input_shape {self.input_shape} has {math.prod(self.input_shape):,} values per "
                f"sample, over the limit of {MAX_VALUES_PER_SAMPLE:,}"
            )
        _check_standard_scales(self.parameterization, self.weight_std, self.bias_std)
        n_layers = _count_layers(self.layers)
        if n_layers > MAX_LAYERS:
            raise ValueError(f"the spec has {n_layers} layers, over the limit of {MAX_LAYERS}")
        from plcore.models.spec_build import build_module

        module = build_module(self, generator=None)  # meta tensors: checks shapes, no memory
        m = sum(p.numel() for p in module.parameters())
        if m == 0:
            raise ValueError("the model has no trainable parameters (add a linear or conv2d layer)")
        _check_param_cap(m)
        return self


class ModelSpec(RootModel[Annotated[MLPSpec | LayersSpec, Field(discriminator="type")]]):
    """A JSON model specification: ``{"type": "mlp", ...}`` or ``{"type": "layers", ...}``."""


AnySpec = MLPSpec | LayersSpec


def _count_layers(items: list[Any]) -> int:
    return sum(
        1 + (_count_layers(item.layers) if isinstance(item, ResidualLayer) else 0) for item in items
    )


def _check_standard_scales(parameterization: str, weight_std: float, bias_std: float) -> None:
    if parameterization == "standard" and (
        weight_std != _DEFAULT_WEIGHT_STD or bias_std != _DEFAULT_BIAS_STD
    ):
        raise ValueError(
            f"weight_std ({weight_std}) and bias_std ({bias_std}) apply to parameterization "
            "'ntk' only; 'standard' uses PyTorch's default initialisation (leave them unset)"
        )


def _check_param_cap(m: int) -> None:
    if m > MAX_PARAMS:
        raise ValueError(f"the model has {m:,} parameters, over the limit of {MAX_PARAMS:,}")


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
