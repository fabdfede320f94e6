"""Parameter-free step modules of the ONNX interpreter (:mod:`plcore.models.onnx_graph`).

Each class is one ONNX operator (or a fixed part of one) with its attributes resolved at load
time. Every step takes tensors positionally and returns one tensor; float tensors are float64,
shape tensors int64. A step that is not twice differentiable says so with a ``nonsmooth`` name
(reported in ``Model.nonsmooth_ops``). The layout steps are in :mod:`plcore.models.onnx_graph`.
Trainable parameters never live here: they are the layers of
:mod:`plcore.models.layers` (Dense, Conv2d, Bias, Scale), placed as separate steps by the builder.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn

_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "neg": torch.neg,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "abs": torch.abs,
    "cos": torch.cos,
    "reciprocal": torch.reciprocal,
    "identity": lambda x: x,
    "gelu_tanh": lambda x: Fn.gelu(x, approximate="tanh"),
}


class Unary(nn.Module):
    """An elementwise op without parameters: neg, exp, log, sqrt, abs, cos, reciprocal, identity,
    gelu_tanh (0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), ONNX Gelu approximate="tanh")."""

    KINDS = tuple(_UNARY)

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in _UNARY:
            raise ValueError(f"unknown unary kind {kind!r}")
        self.kind = kind

    @property
    def activation(self) -> str | None:
        """The activation name reported in ``Model.activations`` (gelu_tanh only)."""
        return "gelu_tanh" if self.kind == "gelu_tanh" else None

    @property
    def nonsmooth(self) -> str | None:
        """The name reported in ``Model.nonsmooth_ops`` when the op is not twice differentiable."""
        return "abs" if self.kind == "abs" else None

    def forward(self, x: Tensor) -> Tensor:
        return _UNARY[self.kind](x)

    def extra_repr(self) -> str:
        return self.kind


def _div(a: Tensor, b: Tensor) -> Tensor:
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


_BINARY: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": _div,
    "pow": torch.pow,
}


class Binary(nn.Module):
    """Elementwise a (op) b with ONNX (numpy) broadcasting: add, sub, mul, div, pow."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in _BINARY:
            raise ValueError(f"unknown binary kind {kind!r}")
        self.kind = kind

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return _BINARY[self.kind](a, b)

    def extra_repr(self) -> str:
        return self.kind


class Extremum(nn.Module):
    """ONNX Max / Min: the elementwise maximum (minimum) of one or more broadcast inputs."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in ("max", "min"):
            raise ValueError(f"unknown extremum kind {kind!r}")
        self.kind = kind
        self.nonsmooth = kind

    def forward(self, *xs: Tensor) -> Tensor:
        pick = torch.maximum if self.kind == "max" else torch.minimum
        y = xs[0]
        for x in xs[1:]:
            y = pick(y, x)
        return y

    def extra_repr(self) -> str:
        return self.kind


class Clip(nn.Module):
    """ONNX Clip (opset >= 11): clamp(x, min, max) with optional scalar bounds given as inputs.

    ``has_min`` / ``has_max`` say which of the optional inputs are present, in that order.
    Where min > max every entry becomes max (the same rule in ONNX and ``torch.clamp``).
    """

    nonsmooth = "clip"

    def __init__(self, has_min: bool, has_max: bool) -> None:
        super().__init__()
        self.has_min, self.has_max = has_min, has_max

    def forward(self, x: Tensor, *bounds: Tensor) -> Tensor:
        it = iter(bounds)
        lo = next(it) if self.has_min else None
        hi = next(it) if self.has_max else None
        return torch.clamp(x, lo, hi)


class Where(nn.Module):
    """ONNX Where: a where the condition holds, else b (numpy broadcasting)."""

    def forward(self, cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
        return torch.where(cond.to(torch.bool), a, b)


class MatMul(nn.Module):
    """numpy-style matmul of two data tensors (no parameters involved)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.matmul(a, b)


class GemmData(nn.Module):
    """Gemm whose A and B are both data: alpha * A' B' (+ beta * C)."""

    def __init__(self, alpha: float, beta: float, trans_a: bool, trans_b: bool) -> None:
        super().__init__()
        self.alpha, self.beta, self.trans_a, self.trans_b = alpha, beta, trans_a, trans_b

    def forward(self, a: Tensor, b: Tensor, c: Tensor | None = None) -> Tensor:
        a = a.T if self.trans_a else a
        b = b.T if self.trans_b else b
        y = self.alpha * (a @ b)
        return y if c is None else y + self.beta * c


class Pad(nn.Module):
    """Constant padding of the trailing spatial axes; ``pads`` in torch order (last axis first)."""

    def __init__(self, pads: tuple[int, ...], value: float) -> None:
        super().__init__()
        self.pads, self.value = pads, value

    def forward(self, x: Tensor) -> Tensor:
        return Fn.pad(x, self.pads, value=self.value)


class AvgPool2d(nn.Module):
    """ONNX AveragePool (2-D, ceil_mode 0, dilation 1) on an already padded input.

    With ``exclude_pad`` the divisor counts only real entries: pool(pad(x)) / pool(pad(1)), which
    equals ONNX count_include_pad=0 for symmetric and asymmetric pads alike.
    """

    def __init__(
        self,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        pads: tuple[int, int, int, int],
        exclude_pad: bool,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.pads, self.exclude_pad = kernel, stride, pads, exclude_pad

    def forward(self, x: Tensor) -> Tensor:
        xp = Fn.pad(x, self.pads)
        y = Fn.avg_pool2d(xp, self.kernel, self.stride)
        if self.exclude_pad and any(self.pads):
            ones = Fn.pad(torch.ones_like(x[:1, :1]), self.pads)
            y = y / Fn.avg_pool2d(ones, self.kernel, self.stride)
        return y


class MaxPool2d(nn.Module):
    """ONNX MaxPool (2-D, ceil_mode 0): pad with -inf, then max pooling."""

    nonsmooth = "maxpool"

    def __init__(
        self,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        dilation: tuple[int, int],
        pads: tuple[int, int, int, int],
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.dilation, self.pads = kernel, stride, dilation, pads

    def forward(self, x: Tensor) -> Tensor:
        xp = Fn.pad(x, self.pads, value=-math.inf) if any(self.pads) else x
        return Fn.max_pool2d(xp, self.kernel, self.stride, dilation=self.dilation)


class GlobalPool(nn.Module):
    """ONNX GlobalAveragePool / GlobalMaxPool: mean or max over every axis after the channel
    axis, keeping them with size 1."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in ("avg", "max"):
            raise ValueError(f"unknown global pooling kind {kind!r}")
        self.kind = kind
        self.nonsmooth = "globalmaxpool" if kind == "max" else None

    def forward(self, x: Tensor) -> Tensor:
        dims = tuple(range(2, x.ndim))
        return x.amax(dim=dims, keepdim=True) if self.kind == "max" else x.mean(dims, True)


class BatchNormFixed(nn.Module):
    """(x - running_mean) / sqrt(running_var + eps) on axis 1; the statistics are buffers.

    The affine part (scale, B) follows as trainable Scale and Bias layers.
    """

    def __init__(self, mean: Tensor, var: Tensor, eps: float, rank: int) -> None:
        super().__init__()
        shape = (-1,) + (1,) * (rank - 2)
        self.register_buffer("running_mean", mean.reshape(shape).clone())
        self.register_buffer("running_var", var.reshape(shape).clone())
        self.eps = eps

    running_mean: Tensor
    running_var: Tensor

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)


class LayerNormPlain(nn.Module):
    """(x - mean) / sqrt(var + eps) over the trailing axes from ``axis`` on (biased variance)."""

    def __init__(self, axis: int, eps: float) -> None:
        super().__init__()
        self.axis, self.eps = axis, eps

    def forward(self, x: Tensor) -> Tensor:
        axis = self.axis % x.ndim
        dims = tuple(range(axis, x.ndim))
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps)


class Softmax(nn.Module):
    """Softmax (or LogSoftmax) along one axis (opset >= 13 semantics)."""

    def __init__(self, axis: int, log: bool) -> None:
        super().__init__()
        self.axis, self.log = axis, log

    def forward(self, x: Tensor) -> Tensor:
        return Fn.log_softmax(x, self.axis) if self.log else Fn.softmax(x, self.axis)


class Expand(nn.Module):
    """ONNX Expand: broadcast x against a shape (numpy rules, in both directions).

    ``target`` is the shape when it was a load-time constant; the Reshape batch rule applies to
    it when it has the rank of x.
    """

    def __init__(self, target: tuple[int, ...] | None, batch: int | None) -> None:
        super().__init__()
        self.target, self.batch = target, batch

    def forward(self, x: Tensor, shape: Tensor | None = None) -> Tensor:
        if self.target is not None:
            dims = list(self.target)
            if self.batch is not None and len(dims) == x.ndim > 0 and dims[0] == self.batch:
                dims[0] = int(x.shape[0])
        else:
            assert shape is not None
            dims = [int(v) for v in shape.tolist()]
        return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(dims)))


class ConstantOfShape(nn.Module):
    """ONNX ConstantOfShape: a tensor of the given (run-time) shape filled with one value."""

    def __init__(self, value: Tensor) -> None:
        super().__init__()
        self.register_buffer("value", value.reshape(()).clone())

    value: Tensor

    def forward(self, shape: Tensor) -> Tensor:
        return self.value.expand([int(v) for v in shape.tolist()]).clone()


class Concat(nn.Module):
    """Concatenate along ``axis``."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(list(xs), dim=self.axis)


class ShapeOf(nn.Module):
    """ONNX Shape with start/end: the shape as an int64 tensor."""

    def __init__(self, start: int, end: int | None) -> None:
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x: Tensor) -> Tensor:
        return torch.tensor(list(x.shape)[self.start : self.end], dtype=torch.int64)


class Gather(nn.Module):
    """ONNX Gather: out.shape = data.shape[:axis] + idx.shape + data.shape[axis+1:]."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, data: Tensor, idx: Tensor) -> Tensor:
        axis = self.axis % data.ndim
        n = data.shape[axis]
        flat = torch.where(idx < 0, idx + n, idx).reshape(-1).to(torch.int64)
        out = torch.index_select(data, axis, flat)
        shape = (*data.shape[:axis], *idx.shape, *data.shape[axis + 1 :])
        return out.reshape(shape)


class Slice(nn.Module):
    """ONNX Slice with load-time constant (axis, start, end, step) entries (Python clamping)."""

    def __init__(self, specs: tuple[tuple[int, int, int, int], ...]) -> None:
        super().__init__()
        self.specs = specs

    def forward(self, x: Tensor) -> Tensor:
        for axis, start, end, step in self.specs:
            a = axis % x.ndim
            if step > 0:
                index: list[slice] = [slice(None)] * x.ndim
                index[a] = slice(start, end, step)
                x = x[tuple(index)]
            else:
                picks = list(range(x.shape[a]))[slice(start, end, step)]
                x = torch.index_select(x, a, torch.tensor(picks, dtype=torch.int64))
        return x


class Cast(nn.Module):
    """Cast to float64 (every float target) or int64 (integer targets of integer data)."""

    def __init__(self, to_float: bool) -> None:
        super().__init__()
        self.to_float = to_float

    def forward(self, x: Tensor) -> Tensor:
        return x.to(torch.float64) if self.to_float else x.to(torch.int64)


class Reduce(nn.Module):
    """ReduceMean / ReduceSum over ``axes`` (None: all axes)."""

    def __init__(self, kind: str, axes: tuple[int, ...] | None, keepdims: bool) -> None:
        super().__init__()
        self.kind, self.axes, self.keepdims = kind, axes, keepdims

    def forward(self, x: Tensor) -> Tensor:
        dims = tuple(range(x.ndim)) if self.axes is None else self.axes
        if self.kind == "mean":
            return x.mean(dim=dims, keepdim=self.keepdims)
        return x.sum(dim=dims, keepdim=self.keepdims)
