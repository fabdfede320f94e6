"""The pydantic schema of JSON model specifications (the format is described in
:mod:`plcore.models.spec`, which re-exports these classes and validates and loads specs)."""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationInfo,
    model_validator,
)

MAX_LAYERS: Final = 64
MAX_PARAMS: Final = 50_000_000
MAX_WIDTH: Final = 1_000_000
MAX_VALUES_PER_SAMPLE: Final = 16_000_000
"""Largest per-sample output of any layer (C*H*W); bounds the memory of a forward pass."""
SIZE_ONLY: Final = "size_only"
"""Validation context key: ``{SIZE_ONLY: True}`` skips the parameter cap and the meta-device
build, so that :mod:`plcore.models.spec_size` can count the parameters of any well-formed spec
(the service compares the count with its own configured limit)."""

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
    def _check(self, info: ValidationInfo) -> MLPSpec:
        _check_standard_scales(self.parameterization, self.weight_std, self.bias_std)
        if _size_only(info):
            return self
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
    def _check(self, info: ValidationInfo) -> LayersSpec:
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
        if _size_only(info):
            return self
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


def _size_only(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get(SIZE_ONLY))


def _check_param_cap(m: int) -> None:
    if m > MAX_PARAMS:
        raise ValueError(f"the model has {m:,} parameters, over the limit of {MAX_PARAMS:,}")
