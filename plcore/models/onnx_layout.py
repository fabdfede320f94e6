"""Layout steps of the ONNX interpreter: they move entries around without arithmetic.

Applied to a weight at load time they are folded into the stored parameter (a permutation of
its entries, which leaves the tangent kernel unchanged; :mod:`plcore.models.onnx_params`).
"""

from __future__ import annotations

import math

from torch import Tensor, nn


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


LAYOUT_ONLY = (Reshape, Flatten, Squeeze, Unsqueeze, Transpose)
