"""Parameter-free step modules of the ONNX interpreter (:mod:`plcore.models.onnx_graph`).

Each class is one ONNX operator (or a fixed part of one) with its attributes resolved at load
time. Every step takes tensors positionally and returns one tensor; float tensors are float64,
shape tensors int64. Trainable parameters never live here: they are the layers of
:mod:`plcore.models.layers` (Dense, Conv2d, Bias, Scale), placed as separate steps by the builder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn


class Unary(nn.Module):
    """An elementwise op without parameters: neg, exp, log, sqrt, abs, cos, reciprocal, identity,
    gelu_tanh (0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), ONNX Gelu approximate="tanh")."""

    KINDS = ("neg", "exp", "log", "sqrt", "abs", "cos", "reciprocal", "identity", "gelu_tanh")

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"unknown unary kind {kind!r}")
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        k = self.kind
        if k == "neg":
            return -x
        if k == "exp":
            return torch.exp(x)
        if k == "log":
            return torch.log(x)
        if k == "sqrt":
            return torch.sqrt(x)
        if k == "abs":
            return torch.abs(x)
        if k == "cos":
            return torch.cos(x)
        if k == "reciprocal":
            return torch.reciprocal(x)
        if k == "gelu_tanh":
            return Fn.gelu(x, approximate="tanh")
        return x

    def extra_repr(self) -> str:
        return self.kind


class Binary(nn.Module):
    """Elementwise a (op) b with ONNX (numpy) broadcasting: add, sub, mul, div, pow."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in ("add", "sub", "mul", "div", "pow"):
            raise ValueError(f"unknown binary kind {kind!r}")
        self.kind = kind

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        k = self.kind
        if k == "add":
            return a + b
        if k == "sub":
            return a - b
        if k == "mul":
            return a * b
        if k == "div":
            if not a.is_floating_point() and not b.is_floating_point():
                return torch.div(a, b, rounding_mode="trunc")
            return a / b
        return torch.pow(a, b)

    def extra_repr(self) -> str:
        return self.kind


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


class GlobalAvgPool(nn.Module):
    """Mean over every axis after the channel axis, keeping them with size 1."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)


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


class Flatten(nn.Module):
    """ONNX Flatten: 2-D output (prod(shape[:axis]), prod(shape[axis:]))."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        axis = self.axis % x.ndim if self.axis < 0 else self.axis
        return x.reshape(math.prod(x.shape[:axis]), -1)


class Reshape(nn.Module):
    """ONNX Reshape (opsets 13-21). ``target`` is the shape when it was a load-time constant.

    Batch rule: when the target is a constant, the graph input has a fixed batch size B and
    ``target[0] == B``, entry 0 is replaced by the leading size of the data at run time, so a graph
    exported with batch 1 runs on n samples.
    """

    def __init__(self, target: tuple[int, ...] | None, allowzero: bool, batch: int | None) -> None:
        super().__init__()
        self.target, self.allowzero, self.batch = target, allowzero, batch

    def forward(self, x: Tensor, shape: Tensor | None = None) -> Tensor:
        if self.target is not None:
            dims = list(self.target)
            if self.batch is not None and dims and dims[0] == self.batch and x.ndim > 0:
                dims[0] = int(x.shape[0])
        else:
            assert shape is not None
            dims = [int(v) for v in shape.tolist()]
        if not self.allowzero:
            dims = [int(x.shape[i]) if d == 0 else d for i, d in enumerate(dims)]
        return x.reshape(dims)


class Transpose(nn.Module):
    """Permute axes; ``perm`` None reverses them (ONNX default)."""

    def __init__(self, perm: tuple[int, ...] | None) -> None:
        super().__init__()
        self.perm = perm

    def forward(self, x: Tensor) -> Tensor:
        perm = self.perm if self.perm is not None else tuple(reversed(range(x.ndim)))
        return x.permute(perm)


class Concat(nn.Module):
    """Concatenate along ``axis``."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(list(xs), dim=self.axis)


class Squeeze(nn.Module):
    """Remove the listed size-1 axes (resolved at load time)."""

    def __init__(self, axes: tuple[int, ...]) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: Tensor) -> Tensor:
        axes = sorted({a % x.ndim for a in self.axes}, reverse=True)
        for a in axes:
            x = x.squeeze(a)
        return x


class Unsqueeze(nn.Module):
    """Insert size-1 axes at ``axes`` (positions in the output)."""

    def __init__(self, axes: tuple[int, ...]) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: Tensor) -> Tensor:
        rank = x.ndim + len(self.axes)
        for a in sorted(a % rank for a in self.axes):
            x = x.unsqueeze(a)
        return x


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
