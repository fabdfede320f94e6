"""The parameter count of a JSON model spec, by arithmetic on the spec alone (no tensors).

The service checks a job's size against its configured limits before anything is built
(``service.guards``); this module gives it the count m for JSON specs. A spec is validated with
the :data:`~plcore.models.spec_schema.SIZE_ONLY` context, which keeps every field check but
skips the schema's own parameter cap and its meta-device build, so that a spec of 10^12
parameters is counted (and refused with its count) rather than rejected as malformed.

Counts (the modules of :mod:`plcore.models.spec_build`)::

    dense   in -> out:                      out * in + out (bias)
    conv2d  C -> C', kernel kh x kw:        C' * C * kh * kw + C' (bias)
    layernorm, affine, per-sample shape S:  2 * prod(S)
    activation, pooling, flatten:           0

Shapes propagate as in the builder: a convolution or pooling maps (C, H, W) to
(C', (H + 2 p - kh) // s + 1, ...), flatten to (C H W,), global pooling to (C,).

Example::

    >>> spec_param_count(validate_spec_for_size({"type": "mlp", "input_dim": 8,
    ...     "widths": [512, 512], "output_dim": 1}))
    267777
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from plcore.models.spec_schema import SIZE_ONLY, AnySpec, LayersSpec, MLPSpec, ModelSpec


@dataclass(frozen=True)
class SpecSize:
    """What a spec says about the size of its model.

    Attributes:
        n_params: m, the parameters the model will have (all trainable by default).
        output_dim: k, outputs per sample.
    """

    n_params: int
    output_dim: int


def validate_spec_for_size(spec: Mapping[str, Any]) -> AnySpec:
    """The spec validated for counting (no parameter cap, nothing built).

    Raises:
        pydantic.ValidationError: a malformed spec (the loader reports it in full).
    """
    return ModelSpec.model_validate(dict(spec), context={SIZE_ONLY: True}).root


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _layers_count(items: list[Any], shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    m = 0
    for item in items:
        kind = item.type
        if kind == "linear":
            d = math.prod(shape)
            m += item.out * d + (item.out if item.bias else 0)
            shape = (item.out,)
        elif kind in ("conv2d", "avgpool2d"):
            if len(shape) != 3:
                raise ValueError(f"{kind} needs an image input, got per-sample shape {shape}")
            c, h, w = shape
            kh, kw = _pair(item.kernel_size)
            if kind == "conv2d":
                (sh, sw), (ph, pw) = _pair(item.stride), _pair(item.padding)
                m += item.out_channels * c * kh * kw + (item.out_channels if item.bias else 0)
                c = item.out_channels
            else:
                (sh, sw), (ph, pw) = _pair(item.stride or item.kernel_size), (0, 0)
            shape = (c, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        elif kind == "global_avgpool":
            shape = (shape[0],)
        elif kind == "flatten":
            shape = (math.prod(shape),)
        elif kind == "layernorm":
            m += 2 * math.prod(shape) if item.elementwise_affine else 0
        elif kind == "residual":
            inner, _ = _layers_count(item.layers, shape)
            m += inner
    return m, shape


def spec_param_count(spec: AnySpec) -> int:
    """m of the model that ``spec`` builds (the formulas of the module docstring)."""
    if isinstance(spec, MLPSpec):
        dims = [spec.input_dim, *spec.widths, spec.output_dim]
        return sum(a * b + (b if spec.bias else 0) for a, b in itertools.pairwise(dims))
    assert isinstance(spec, LayersSpec)
    m, _ = _layers_count(list(spec.layers), tuple(spec.input_shape))
    return m


def spec_size(source: Mapping[str, Any] | bytes) -> SpecSize | None:
    """The size of a JSON spec (a mapping, or its JSON bytes); None when the spec is not
    well-formed (loading it then reports why)."""
    import json

    try:
        raw = json.loads(source) if isinstance(source, bytes | bytearray) else source
        if not isinstance(raw, Mapping):
            return None
        spec = validate_spec_for_size(raw)
        return SpecSize(n_params=spec_param_count(spec), output_dim=spec.output_dim)
    except (ValueError, ValidationError, UnicodeDecodeError, RecursionError):
        return None
