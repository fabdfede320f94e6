"""What the convolution, pooling and normalisation ONNX operators become (part of
:class:`plcore.models.onnx_convert.GraphBuilder`): Conv -> :class:`~plcore.models.layers.Conv2d`,
AveragePool / MaxPool -> steps of :mod:`plcore.models.onnx_ops`, BatchNormalization (inference)
and LayerNormalization -> a parameter-free normalisation step followed by trainable Scale and
Bias layers. Scalar factors applied to a weight in the graph are the layers' scales
(:mod:`plcore.models.onnx_params`).

The LayerNorm of exports before opset 17 (ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt,
Div, each intermediate read only inside the pattern, the same trailing negative axes twice, the
exponent and eps from Constant nodes) becomes the same normalisation step: it evaluates exactly
these operations (the centred value once more, with the same result), so the function and its
derivatives are unchanged, and the step is one link for the running-error bound and the
analytic beta instead of a branching subgraph. Gamma and beta stay the Mul and Add after it.

The exact GELU of exports before opset 20 (Div by sqrt(2) or Mul by 1/sqrt(2), Erf, Add 1, Mul by x,
Mul by 0.5, the last two in either order, constants from Constant nodes, intermediates read only
inside) becomes the GELU activation. Its constant c is sqrt(2) (or 1/sqrt(2)) rounded to float64, c
= sqrt(2) (1 + d) with |d| <= 2^-53, so the graph's exact function is GELU with that one rounding
committed. By the mean value theorem (erf' = 2 exp(-t^2) / sqrt(pi), the point between x / c and x /
sqrt(2)) the difference 0.5 |x| |erf(x / c) - erf(x / sqrt(2))| is at most x^2 exp(-x^2 / (2 (1 +
|d|)^2)) / sqrt(2 pi) 2^-53 (1 + 2^-52), whose maximum over x is 2 (1 + |d|)^2 / (e sqrt(2 pi))
2^-53 (1 + 2^-52) < 0.2936 u per entry: below one rounding of GELU's own evaluation. The fused model
is the function of the exported torch module (nn.GELU); a constant off by more (a float32 export)
keeps the decomposed ops."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import numpy_helper

from plcore.models import onnx_graph as graph
from plcore.models import onnx_ops as ops
from plcore.models.layers import Activation, Bias, Conv2d, Scale

#: the constant of GELU's Erf argument, as exported: x / sqrt(2) or x * (1 / sqrt(2)), in float64
_GELU_ARG = {"Div": math.sqrt(2.0), "Mul": math.sqrt(0.5)}


def text_attr(attrs: dict[str, Any], key: str, default: str) -> str:
    value = attrs.get(key, default)
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Call:
    """One node to convert: the proto, its attributes by name, its inputs and first output."""

    node: onnx.NodeProto
    attrs: dict[str, Any]
    ins: list[str]
    out: str


class SpatialConverter(graph.GraphState):
    """Conv, pooling and normalisation handlers (``_op_<OpType>``)."""

    # ----- convolution and pooling ----------------------------------------------------------
    def _spatial_pads(
        self, c: Call, x: str, kernel: list[int], strides: list[int], dilations: list[int]
    ) -> tuple[int, int, int, int]:
        """ONNX pads [h_begin, w_begin, h_end, w_end], resolving auto_pad from the input shape."""
        auto = text_attr(c.attrs, "auto_pad", "NOTSET")
        spatial = self.val(x).shape[2:]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
                total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
                small, big = total // 2, total - total // 2
                begin.append(small if auto == "SAME_UPPER" else big)
                end.append(big if auto == "SAME_UPPER" else small)
            return (begin[0], begin[1], end[0], end[1])
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto != "NOTSET":
            raise self.unsupported(c.node, f"auto_pad={auto!r}")
        pads = [int(p) for p in c.attrs.get("pads", [0, 0, 0, 0])]
        return (pads[0], pads[1], pads[2], pads[3])

    def _op_Conv(self, c: Call) -> None:
        x, wname, attrs = c.ins[0], c.ins[1], c.attrs
        if not self.is_const(wname) or self.val(wname).ndim != 4 or self.val(x).ndim != 4:
            raise self.unsupported(c.node, "only 2-D convolutions with initializer weights")
        w, fw = self.param(wname)
        b, fb = (
            self.param(c.ins[2], lambda t: t.reshape(-1))
            if len(c.ins) > 2 and c.ins[2]
            else (None, 1.0)
        )
        kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
        strides = [int(s) for s in attrs.get("strides", [1, 1])]
        dil = [int(d) for d in attrs.get("dilations", [1, 1])]
        hb, wb, he, we = self._spatial_pads(c, x, kernel, strides, dil)
        padding = (hb, wb)
        if (hb, wb) != (he, we):
            x = self.emit(ops.Pad((wb, we, hb, he), 0.0), [x], self.tmp(c.out))
            padding = (0, 0)
        groups = int(attrs.get("group", 1))
        stride, dilation = (strides[0], strides[1]), (dil[0], dil[1])
        mod = Conv2d(
            w,
            b,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            weight_scale=fw,
            bias_scale=fb,
        )
        self.emit(mod, [x], c.out)

    def _pool_geometry(
        self, c: Call, dilations: list[int]
    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
        x = c.ins[0]
        if self.val(x).ndim != 4:
            raise self.unsupported(c.node, "only 2-D pooling (NCHW input)")
        kernel = [int(k) for k in c.attrs["kernel_shape"]]
        strides = [int(s) for s in c.attrs.get("strides", [1, 1])]
        hb, wb, he, we = self._spatial_pads(c, x, kernel, strides, dilations)
        if int(c.attrs.get("ceil_mode", 0)):
            spatial = self.val(x).shape[2:]
            pads = (hb + he, wb + we)
            for size, k, s, d, p in zip(spatial, kernel, strides, dilations, pads, strict=True):
                if (size + p - (k - 1) * d - 1) % s != 0:
                    raise self.unsupported(c.node, "ceil_mode=1 with a partial last window")
        return (kernel[0], kernel[1]), (strides[0], strides[1]), (wb, we, hb, he)

    def _op_AveragePool(self, c: Call) -> None:
        dil = [int(d) for d in c.attrs.get("dilations", [1, 1])]
        if dil != [1, 1]:
            raise self.unsupported(c.node, f"dilations={dil}")
        kernel, strides, pads = self._pool_geometry(c, dil)
        exclude = not int(c.attrs.get("count_include_pad", 0))
        self.emit(ops.AvgPool2d(kernel, strides, pads, exclude), c.ins[:1], c.out)

    def _op_MaxPool(self, c: Call) -> None:
        dil = [int(d) for d in c.attrs.get("dilations", [1, 1])]
        kernel, strides, pads = self._pool_geometry(c, dil)
        self.emit(ops.MaxPool2d(kernel, strides, (dil[0], dil[1]), pads), c.ins[:1], c.out)

    # ----- normalisation --------------------------------------------------------------------
    def _op_BatchNormalization(self, c: Call) -> None:
        if int(c.attrs.get("training_mode", 0)):
            raise self.unsupported(c.node, "training_mode=1")
        x, scale, bias, mean, var = c.ins[:5]
        if not all(self.is_const(n) for n in (scale, bias, mean, var)):
            raise self.unsupported(c.node, "scale, B, mean and var must be initializers")
        rank = self.val(x).ndim
        shape = (-1,) + (1,) * (rank - 2)
        eps = float(c.attrs.get("epsilon", 1e-5))
        for stat in (mean, var):
            if self.is_param(stat):
                self.tracker.bn_stats.add(self.tracker.pexpr[self.name(stat)].init)
        norm = ops.BatchNormFixed(self.val(mean), self.val(var), eps, rank)
        h = self.emit(norm, [x], self.tmp(c.out))
        g, fg = self.param(scale, lambda t: t.reshape(shape))
        h = self.emit(Scale(g, scale=fg), [h], self.tmp(c.out))
        b, fb = self.param(bias, lambda t: t.reshape(shape))
        self.emit(Bias(b, scale=fb), [h], c.out)

    @functools.cached_property
    def _constant_nodes(self) -> dict[str, onnx.NodeProto]:
        """Constant nodes by output name (the fusions look one up per candidate node)."""
        return {n.output[0]: n for n in self.graph.node if n.op_type == "Constant" and n.output}

    def _constant_node_scalar(self, name: str) -> float | None:
        """The value of a one-element float Constant node output (not an initializer: those
        are tensors the user may make trainable), else None."""
        n = self._constant_nodes.get(name)
        if n is None:
            return None
        attrs = {a.name: a for a in n.attribute}
        if "value" not in attrs:
            return None
        arr = numpy_helper.to_array(onnx.helper.get_attribute_value(attrs["value"]))
        return float(arr.reshape(-1)[0]) if arr.size == 1 and arr.dtype.kind == "f" else None

    def reduce_axes(self, node: onnx.NodeProto, since: int) -> list[int] | None:
        """The axes of a Reduce* node: its attribute before opset ``since``, its constant second
        input from then on ([] when absent); None when that input is not a constant."""
        if self.opset < since:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            return [int(a) for a in attrs.get("axes", [])]
        if len(node.input) < 2 or not node.input[1]:
            return []
        if not self.is_const(node.input[1]):
            return None
        return [int(v) for v in self.val(node.input[1]).reshape(-1).tolist()]

    def _mean_axes(self, node: onnx.NodeProto) -> tuple[int, ...] | None:
        """ReduceMean's axes when it keeps the reduced dimensions, else None."""
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        axes = self.reduce_axes(node, since=18)
        return tuple(axes) if axes is not None and int(attrs.get("keepdims", 1)) == 1 else None

    def _pattern_next(self, value: str, op: str) -> tuple[int, onnx.NodeProto] | None:
        found = self.single_consumer(value)
        return found if found is not None and found[1].op_type == op else None

    def fuse_layernorm(self, node: onnx.NodeProto) -> bool:
        """Emit one LayerNormPlain for a decomposed LayerNorm starting at this ReduceMean
        (module docstring); False, converting nothing, when the pattern does not match."""
        x, axes = node.input[0], self._mean_axes(node)
        if not axes or sorted(axes) != list(range(-len(axes), 0)) or len(axes) >= self.val(x).ndim:
            return False
        sub = self._pattern_next(node.output[0], "Sub")
        if sub is None or list(sub[1].input) != [x, node.output[0]]:
            return False
        d = sub[1].output[0]
        users = sorted(self.consumers.get(d, []), key=lambda j: self.graph.node[j].op_type)
        if len(users) != 2 or self.uses[d] != 2:
            return False
        (j_div, div), (j_pow, pw) = ((j, self.graph.node[j]) for j in users)  # "Div" < "Pow"
        if pw.op_type != "Pow" or pw.input[0] != d or self._constant_node_scalar(pw.input[1]) != 2:
            return False
        var = self._pattern_next(pw.output[0], "ReduceMean")
        if var is None or self._mean_axes(var[1]) != axes:
            return False
        add = self._pattern_next(var[1].output[0], "Add")
        if add is None:
            return False
        others = [i for i in add[1].input if i != var[1].output[0]]
        eps = self._constant_node_scalar(others[0]) if len(others) == 1 else None
        if eps is None or not eps > 0:
            return False
        sqrt = self._pattern_next(add[1].output[0], "Sqrt")
        if sqrt is None or div.op_type != "Div" or list(div.input) != [d, sqrt[1].output[0]]:
            return False
        if self.single_consumer(sqrt[1].output[0]) is None:
            return False
        self.emit(ops.LayerNormPlain(-len(axes), eps), [x], div.output[0])
        self.skip.update((sub[0], j_pow, var[0], add[0], sqrt[0], j_div))
        return True

    def _scalar_operand(self, node: onnx.NodeProto, x: str) -> float | None:
        """The Constant-node scalar that a binary ``node`` combines with ``x``, else None."""
        if len(node.input) != 2 or x not in node.input:
            return None
        other = node.input[1] if node.input[0] == x else node.input[0]
        return None if other == x else self._constant_node_scalar(other)

    def fuse_gelu(self, node: onnx.NodeProto) -> bool:
        """Emit one GELU activation for a decomposed exact GELU starting at this Div / Mul
        (module docstring); False, converting nothing, when the pattern does not match."""
        if node.op_type not in _GELU_ARG or len(node.input) != 2:
            return False
        x = node.input[0]
        if self._constant_node_scalar(node.input[1]) != _GELU_ARG[node.op_type]:
            return False
        erf = self._pattern_next(node.output[0], "Erf")
        add = None if erf is None else self._pattern_next(erf[1].output[0], "Add")
        if erf is None or add is None or self._scalar_operand(add[1], erf[1].output[0]) != 1.0:
            return False
        one_plus = add[1].output[0]
        first = self._pattern_next(one_plus, "Mul")
        if first is None:
            return False
        last = self._pattern_next(first[1].output[0], "Mul")
        if last is None:
            return False
        if sorted(first[1].input) == sorted([x, one_plus]):  # (x * (1 + erf)) * 0.5
            ok = self._scalar_operand(last[1], first[1].output[0]) == 0.5
        else:  # x * ((1 + erf) * 0.5)
            ok = self._scalar_operand(first[1], one_plus) == 0.5 and sorted(
                last[1].input
            ) == sorted([x, first[1].output[0]])
        if not ok:
            return False
        self.emit(Activation("gelu"), [x], last[1].output[0])
        self.skip.update((erf[0], add[0], first[0], last[0]))
        return True

    def _op_LayerNormalization(self, c: Call) -> None:
        ins, out = c.ins, c.out
        axis, eps = int(c.attrs.get("axis", -1)), float(c.attrs.get("epsilon", 1e-5))
        h = self.emit(ops.LayerNormPlain(axis, eps), [ins[0]], self.tmp(out))
        has_bias = len(ins) > 2 and bool(ins[2])
        target = self.tmp(out) if has_bias else out
        if self.is_const(ins[1]):
            g, fg = self.param(ins[1])
            h = self.emit(Scale(g, scale=fg), [h], target)
        else:
            h = self.emit(ops.Binary("mul"), [h, ins[1]], target)
        if has_bias:
            if self.is_const(ins[2]):
                b, fb = self.param(ins[2])
                self.emit(Bias(b, scale=fb), [h], out)
            else:
                self.emit(ops.Binary("add"), [h, ins[2]], out)
