"""Build the ``nn.Sequential`` of a validated JSON spec (see ``plcore.models.spec``).

Shapes are propagated by formula while building, so every mismatch is reported with the layer's
JSON path (``layers.4.layers.1``) and the shapes involved. With ``generator=None`` the parameters
are ``meta`` tensors: the module has the real structure, names and shapes but holds no memory and
draws no random numbers; the spec validator uses this to check shapes and count parameters.

The parameter-free modules defined here (:class:`Residual`, :class:`LayerNorm`'s normalisation,
:class:`GlobalAvgPool`) plus ``nn.Flatten`` and ``nn.AvgPool2d`` are the only non-
``plcore.models.layers`` modules a JSON model contains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from plcore.models.layers import Activation, Bias, Conv2d, Dense, Scale

if TYPE_CHECKING:
    from plcore.models.spec_schema import AnySpec

_F64 = torch.float64


class Residual(nn.Module):
    """y = x + block(x)."""

    def __init__(self, block: nn.Sequential) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class GlobalAvgPool(nn.Module):
    """(n, C, H, W) -> (n, C): the mean over H and W."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


class LayerNorm(nn.Module):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta over the trailing ``n_dims`` axes.

    mean and the biased variance var are taken over the normalised axes (as ``nn.LayerNorm``).
    gamma is a :class:`~plcore.models.layers.Scale` (``scale.weight``, starts at 1) and beta a
    :class:`~plcore.models.layers.Bias` (``shift.bias``, starts at 0), both shaped like one
    normalised slice.
    """

    def __init__(
        self, normalized_shape: tuple[int, ...], *, eps: float, affine: bool, device: str
    ) -> None:
        super().__init__()
        self.dims = tuple(range(-len(normalized_shape), 0))
        self.eps = float(eps)
        self.scale: Scale | None = None
        self.shift: Bias | None = None
        if affine:
            self.scale = Scale(torch.ones(normalized_shape, dtype=_F64, device=device))
            self.shift = Bias(torch.zeros(normalized_shape, dtype=_F64, device=device))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=self.dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=self.dims, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.scale is not None and self.shift is not None:
            y = self.shift(self.scale(y))
        return y

    def extra_repr(self) -> str:
        return f"dims={self.dims}, eps={self.eps:g}"


@dataclass
class _Init:
    """Draws initial parameters in a fixed order from one generator (None: meta tensors)."""

    generator: torch.Generator | None
    parameterization: str
    weight_std: float
    bias_std: float

    def draw(
        self, w_shape: tuple[int, ...], with_bias: bool, fan_in: int
    ) -> tuple[Tensor, Tensor | None, float, float]:
        """W, b (weight first, then bias), weight_scale, bias_scale."""
        n_out = w_shape[0]
        if self.parameterization == "ntk":
            scales = (self.weight_std / math.sqrt(fan_in), self.bias_std)
        else:
            scales = (1.0, 1.0)
        g = self.generator
        if g is None:
            W = torch.empty(w_shape, dtype=_F64, device="meta")
            b = torch.empty(n_out, dtype=_F64, device="meta") if with_bias else None
            return W, b, *scales
        if self.parameterization == "ntk":
            W = torch.randn(w_shape, generator=g, dtype=_F64)
            b = torch.randn(n_out, generator=g, dtype=_F64) if with_bias else None
            return W, b, *scales
        # nn.Linear / nn.Conv2d reset_parameters: kaiming_uniform(a=sqrt(5)) has bound
        # sqrt(6 / ((1 + 5) fan_in)) = 1/sqrt(fan_in); the bias bound is 1/sqrt(fan_in) too.
        bound = 1.0 / math.sqrt(fan_in)
        W = (torch.rand(w_shape, generator=g, dtype=_F64) * 2.0 - 1.0) * bound
        b = None
        if with_bias:
            b = (torch.rand(n_out, generator=g, dtype=_F64) * 2.0 - 1.0) * bound
        return W, b, *scales

    @property
    def device(self) -> str:
        return "cpu" if self.generator is not None else "meta"


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _build_mlp(spec: Any, init: _Init) -> nn.Sequential:
    dims = [spec.input_dim, *spec.widths, spec.output_dim]
    modules: list[nn.Module] = []
    for i in range(len(dims) - 1):
        W, b, ws, bs = init.draw((dims[i + 1], dims[i]), spec.bias, dims[i])
        modules.append(Dense(W, b, weight_scale=ws, bias_scale=bs))
        if i < len(dims) - 2:
            modules.append(Activation(spec.activation))
    if spec.output_activation is not None:
        modules.append(Activation(spec.output_activation))
    return nn.Sequential(*modules)


def _build_layer(
    item: Any, shape: tuple[int, ...], where: str, init: _Init
) -> tuple[nn.Module, tuple[int, ...]]:
    label = f"layer {where} ({item.type})"
    kind = item.type
    if kind in ("conv2d", "avgpool2d", "global_avgpool") and len(shape) != 3:
        raise ValueError(f"{label} needs an image input (C, H, W), got per-sample {_fmt(shape)}")
    if kind == "linear":
        if len(shape) != 1:
            raise ValueError(
                f"{label} needs a flat input (d,), got per-sample {_fmt(shape)}; "
                "add a flatten or global_avgpool layer first"
            )
        W, b, ws, bs = init.draw((item.out, shape[0]), item.bias, shape[0])
        return Dense(W, b, weight_scale=ws, bias_scale=bs), (item.out,)
    if kind in ("conv2d", "avgpool2d"):
        c, h, w = shape
        kh, kw = _pair(item.kernel_size)
        if kind == "conv2d":
            (sh, sw), (ph, pw) = _pair(item.stride), _pair(item.padding)
        else:
            (sh, sw), (ph, pw) = _pair(item.stride or item.kernel_size), (0, 0)
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if h + 2 * ph < kh or w + 2 * pw < kw:
            raise ValueError(
                f"{label}: kernel {(kh, kw)} with padding {(ph, pw)} does not fit "
                f"per-sample input {_fmt(shape)}"
            )
        if kind == "avgpool2d":
            return nn.AvgPool2d((kh, kw), (sh, sw)), (c, ho, wo)
        co = item.out_channels
        fan_in = c * kh * kw
        W, b, ws, bs = init.draw((co, c, kh, kw), item.bias, fan_in)
        conv = Conv2d(W, b, stride=(sh, sw), padding=(ph, pw), weight_scale=ws, bias_scale=bs)
        return conv, (co, ho, wo)
    if kind == "global_avgpool":
        return GlobalAvgPool(), (shape[0],)
    if kind == "flatten":
        return nn.Flatten(), (math.prod(shape),)
    if kind == "layernorm":
        norm = LayerNorm(shape, eps=item.eps, affine=item.elementwise_affine, device=init.device)
        return norm, shape
    if kind == "activation":
        return Activation(item.name), shape
    if kind == "residual":
        block, out = _build_list(item.layers, shape, f"{where}.layers", init)
        if out != shape:
            raise ValueError(
                f"{label}: the block maps per-sample {_fmt(shape)} to {_fmt(out)}; "
                "x + block(x) needs the same shape"
            )
        return Residual(block), shape
    raise ValueError(f"{label}: unknown layer type")  # unreachable after validation


def _build_list(
    items: list[Any], shape: tuple[int, ...], path: str, init: _Init
) -> tuple[nn.Sequential, tuple[int, ...]]:
    from plcore.models.spec_schema import MAX_VALUES_PER_SAMPLE

    modules: list[nn.Module] = []
    for i, item in enumerate(items):
        module, out = _build_layer(item, shape, f"{path}.{i}", init)
        if math.prod(out) > MAX_VALUES_PER_SAMPLE:
            raise ValueError(
                f"layer {path}.{i} ({item.type}) outputs {math.prod(out):,} values per sample "
                f"{_fmt(out)}, over the limit of {MAX_VALUES_PER_SAMPLE:,}"
            )
        modules.append(module)
        shape = out
    return nn.Sequential(*modules), shape


def build_module(spec: AnySpec, *, generator: torch.Generator | None) -> nn.Sequential:
    """The module of a validated spec; float64 on the CPU, or ``meta`` when generator is None.

    Raises:
        ValueError: a shape that does not propagate (the spec validator turns it into a
            ``ModelSpecError``).
    """
    init = _Init(generator, spec.parameterization, spec.weight_std, spec.bias_std)
    if spec.type == "mlp":
        return _build_mlp(spec, init)
    shape = tuple(spec.input_shape)
    module, out = _build_list(spec.layers, shape, "layers", init)
    if out != (spec.output_dim,):
        last = len(spec.layers) - 1
        raise ValueError(
            f"the layers end at per-sample shape {_fmt(out)} (after layer layers.{last}, "
            f"{spec.layers[last].type}), but output_dim is {spec.output_dim}: the output must "
            f"be ({spec.output_dim},)"
        )
    return module
