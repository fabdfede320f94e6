"""How ONNX initializers become trainable parameters without changing the graph's kernel.

The importer folds constant subgraphs at load time, but never folds arithmetic INTO a parameter:
d F / d initializer must be what the graph says (CONTRACT.md, "Parameterization"). A value derived
from one float initializer t is tracked as a *parameter expression* (:class:`ParamExpr`)

    value = factor * t.flat[index]

where ``factor`` collects scalar Mul / Div / Neg applied to t and ``index`` (an int64 tensor of
the value's shape) collects pure layout ops (Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Cast
to float, Identity). Layout ops only permute and reshape entries: the Jacobian with respect to
``t.flat[index]`` is a column permutation of the one with respect to t, so K = J J^T is unchanged
(tested). When such a value meets a weight slot (MatMul / Gemm weight, Gemm C, Conv W / B, the
bias Add after a MatMul, Add / Sub / Mul against data, BatchNormalization / LayerNormalization
scale and bias) the layer stores ``t.flat[index]`` itself as its ``nn.Parameter`` and carries
``factor`` in its scale (``Dense.weight_scale``, ``Bias.scale``, ...), so the structured kernel
still applies. Anything else (arithmetic with a non-scalar constant, two initializers combined,
Exp of a log-scale, Div or Pow by an initializer, an initializer as a Clip bound) takes the
general path: a :class:`ParamRef` step outputs ``factor * P.flat[gather]`` at run time from the
shared parameter P, and the op runs as an ordinary run-time step.

One ``nn.Parameter`` per initializer: a second weight slot fed by the same initializer in the same
layout shares it (tied weights; the kernel w.r.t. the shared tensor is the sum over its uses; the
structured kernel then falls back to the reference one), and the general path always reads it.
Two weight slots that need one initializer in two different layouts are refused.

Default trainability (overridable by the ``trainable`` / ``frozen`` options): a parameter is
trainable when it comes from a graph initializer with at least 2 elements that is not a
BatchNormalization running mean or variance. Size-1 initializers and float ``Constant`` node
values that end up in a weight slot are parameters with ``requires_grad=False``; running
statistics are buffers; integer tensors are never parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plcore.errors import UnsupportedOperatorError
from plcore.models import onnx_ops as ops
from plcore.models.onnx_layout import LAYOUT_ONLY


@dataclass(frozen=True)
class ParamExpr:
    """value = factor * raw(init).flat[index]; ``index`` has the value's shape."""

    init: str
    factor: float
    index: Tensor


class ParamRef(nn.Module):
    """A step with no inputs that outputs ``factor * weight.flat[gather]`` (the general path).

    ``weight`` is the initializer's shared ``nn.Parameter``; ``gather`` (None: the parameter as it
    is) maps each output entry to an entry of it.
    """

    def __init__(self, weight: nn.Parameter, gather: Tensor | None, factor: float) -> None:
        super().__init__()
        self.weight = weight
        self.register_buffer("gather", None if gather is None else gather.clone())
        self.factor = float(factor)

    gather: Tensor | None

    def forward(self) -> Tensor:
        w = self.weight if self.gather is None else self.weight.reshape(-1)[self.gather]
        return w if self.factor == 1.0 else self.factor * w

    def extra_repr(self) -> str:
        return f"factor={self.factor:.4g}, shape={tuple(self.weight.shape)}"


def _iota(t: Tensor) -> Tensor:
    return torch.arange(t.numel(), dtype=torch.int64).reshape(t.shape)


def _scalar(t: Tensor) -> float | None:
    return float(t.reshape(())) if t.is_floating_point() and t.numel() == 1 else None


class ParameterTracker:
    """The parameter expressions and the one ``nn.Parameter`` per initializer of a graph."""

    def __init__(self, initializers: dict[str, Tensor]) -> None:
        self.raw: dict[str, Tensor] = {
            n: v for n, v in initializers.items() if v.is_floating_point()
        }
        self.pexpr: dict[str, ParamExpr] = {
            n: ParamExpr(n, 1.0, _iota(v)) for n, v in self.raw.items()
        }
        self.params: dict[str, tuple[nn.Parameter, Tensor]] = {}
        self.real_inits: frozenset[str] = frozenset(self.raw)
        self.bn_stats: set[str] = set()

    # ----- folding ------------------------------------------------------------------------------
    def fold(
        self, module: nn.Module, ins: tuple[str, ...], values: list[Tensor], y: Tensor
    ) -> ParamExpr | None:
        """The expression of ``module(*ins)`` when it is a layout op or a scalar factor applied to
        one parameter expression (every input a load-time constant), else None."""
        pos = [k for k, n in enumerate(ins) if n in self.pexpr]
        if len(pos) != 1:
            return None
        k = pos[0]
        pe = self.pexpr[ins[k]]
        if isinstance(module, LAYOUT_ONLY) and len(ins) == 1:
            return ParamExpr(pe.init, pe.factor, module(pe.index))
        if isinstance(module, ops.Cast) and module.to_float:
            return pe
        if isinstance(module, ops.Unary) and module.kind in ("neg", "identity"):
            return ParamExpr(pe.init, -pe.factor if module.kind == "neg" else pe.factor, pe.index)
        if isinstance(module, ops.Binary) and len(ins) == 2 and y.numel() == pe.index.numel():
            c = _scalar(values[1 - k])
            if c is None:
                return None
            if module.kind == "mul":
                return ParamExpr(pe.init, pe.factor * c, pe.index.reshape(y.shape))
            if module.kind == "div" and k == 0 and c != 0.0:
                return ParamExpr(pe.init, pe.factor / c, pe.index.reshape(y.shape))
        return None

    # ----- parameters ---------------------------------------------------------------------------
    def _pseudo(self, name: str, value: Tensor) -> ParamExpr:
        """A float constant that is no initializer (a Constant node's value) met in a weight slot:
        a parameter of its own, frozen by default."""
        if not value.is_floating_point():
            raise UnsupportedOperatorError(f"weight {name!r} is not a floating-point tensor")
        self.raw[name] = value
        self.pexpr[name] = ParamExpr(name, 1.0, _iota(value))
        return self.pexpr[name]

    def weight_param(
        self, name: str, value: Tensor, slot: Callable[[Tensor], Tensor] = lambda t: t
    ) -> tuple[nn.Parameter, float]:
        """The parameter for a weight slot and the factor the layer must carry.

        ``slot`` is the layout the layer stores (e.g. a transpose for Dense): the parameter holds
        ``raw.flat[slot(index)]``, so the layer computes ``factor * parameter`` = the graph's value.
        """
        pe = self.pexpr.get(name) or self._pseudo(name, value)
        target = slot(pe.index).contiguous()
        found = self.params.get(pe.init)
        if found is None:
            p = nn.Parameter(self.raw[pe.init].reshape(-1)[target].clone())
            self.params[pe.init] = (p, target)
            return p, pe.factor
        p, layout = found
        if layout.shape == target.shape and torch.equal(layout, target):
            return p, pe.factor
        raise UnsupportedOperatorError(
            f"initializer {pe.init!r} is used as a weight in two different layouts (shapes "
            f"{tuple(layout.shape)} and {tuple(target.shape)}); tied weights must be used in one "
            "layout"
        )

    def param_ref(self, name: str) -> ParamRef:
        """The general-path step that outputs the value of parameter expression ``name``."""
        pe = self.pexpr[name]
        found = self.params.get(pe.init)
        if found is None:
            raw = self.raw[pe.init]
            self.params[pe.init] = (nn.Parameter(raw.clone()), _iota(raw))
            found = self.params[pe.init]
        p, layout = found
        inverse = torch.empty(layout.numel(), dtype=torch.int64)
        inverse[layout.reshape(-1)] = torch.arange(layout.numel())
        gather = inverse[pe.index]
        same = gather.shape == p.shape and torch.equal(gather, _iota(p))
        return ParamRef(p, None if same else gather, pe.factor)

    def default_trainable(self, init: str) -> bool:
        """Graph initializers with >= 2 entries, not BatchNormalization running statistics."""
        return init in self.real_inits and self.raw[init].numel() >= 2 and init not in self.bn_stats

    def constant_weight_notes(self) -> tuple[str, ...]:
        """A note naming the Constant-node values used as weights (frozen by default)."""
        names = sorted(n for n in self.params if n not in self.real_inits)
        if not names:
            return ()
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        return (
            f"weights {shown} are Constant nodes, not initializers: they are frozen by default; "
            "name them in the option trainable to train them",
        )

    def finish(self, module: nn.Module) -> dict[str, str]:
        """Set the default ``requires_grad`` and map each module parameter name to its source."""
        source = {id(p): init for init, (p, _) in self.params.items()}
        for init, (p, _) in self.params.items():
            p.requires_grad_(self.default_trainable(init))
        return {name: source[id(p)] for name, p in module.named_parameters()}
