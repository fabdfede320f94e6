"""What each ONNX operator becomes: :class:`GraphBuilder`, the per-op conversion.

Each node is turned into zero or more steps of :class:`plcore.models.onnx_graph.OnnxGraphModule`:
trainable layers of :mod:`plcore.models.layers` where the parameter rule of
:mod:`plcore.models.onnx_import` says so, parameter-free steps of :mod:`plcore.models.onnx_ops`
otherwise, or nothing (an alias, a constant, or a node fused into its producer). Ops that need
nothing but their attributes are listed in ``_ATTRIBUTE_OPS``; the rest have an ``_op_<OpType>``
method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx
import torch
from torch import nn

from plcore.errors import ModelFormatError, UnsupportedOperatorError
from plcore.models import onnx_graph as graph
from plcore.models import onnx_ops as ops
from plcore.models.layers import Activation, Bias, Conv2d, Dense, Scale

# ONNX op -> name of the Activation layer / Unary kind / Binary kind (the op name in lower case)
_ACTIVATION_OPS = {op: op.lower() for op in ("Tanh", "Erf", "Sigmoid", "Softplus", "Relu", "Sin")}
_UNARY_OPS = {op: op.lower() for op in ("Neg", "Exp", "Log", "Sqrt", "Abs", "Cos", "Reciprocal")}
_BINARY_OPS = {op: op.lower() for op in ("Add", "Sub", "Mul", "Div", "Pow")}


def _perm(attrs: dict[str, Any]) -> tuple[int, ...] | None:
    return None if attrs.get("perm") is None else tuple(attrs["perm"])


def _text(attrs: dict[str, Any], key: str, default: str) -> str:
    value = attrs.get(key, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _gelu(attrs: dict[str, Any]) -> nn.Module:
    exact = _text(attrs, "approximate", "none") == "none"
    return Activation("gelu") if exact else ops.Unary("gelu_tanh")


def _shape(attrs: dict[str, Any]) -> nn.Module:
    end = attrs.get("end")
    return ops.ShapeOf(int(attrs.get("start", 0)), None if end is None else int(end))


# op -> (step from the attributes, how many leading inputs it takes; None: all of them)
_ATTRIBUTE_OPS: dict[str, tuple[Callable[[dict[str, Any]], nn.Module], int | None]] = {
    "Gelu": (_gelu, 1),
    "Shape": (_shape, 1),
    "Softmax": (lambda a: ops.Softmax(int(a.get("axis", -1)), log=False), 1),
    "LogSoftmax": (lambda a: ops.Softmax(int(a.get("axis", -1)), log=True), 1),
    "Flatten": (lambda a: graph.Flatten(int(a.get("axis", 1))), 1),
    "Transpose": (lambda a: graph.Transpose(_perm(a)), 1),
    "Concat": (lambda a: ops.Concat(int(a["axis"])), None),
    "GlobalAveragePool": (lambda a: ops.GlobalPool("avg"), 1),
    "GlobalMaxPool": (lambda a: ops.GlobalPool("max"), 1),
    "Max": (lambda a: ops.Extremum("max"), None),
    "Min": (lambda a: ops.Extremum("min"), None),
    "Where": (lambda a: ops.Where(), 3),
}


@dataclass(frozen=True)
class Call:
    """One node to convert: the proto, its attributes by name, its inputs and first output."""

    node: onnx.NodeProto
    attrs: dict[str, Any]
    ins: list[str]
    out: str


class GraphBuilder(graph.GraphState):
    """Converts the nodes of one ONNX graph into an interpreter module (``build``)."""

    def build(self, output_name: str) -> graph.OnnxGraphModule:
        for idx, node in enumerate(self.graph.node):
            if idx not in self.skip:
                self.convert(idx, node)
        return self.module(output_name)

    def convert(self, idx: int, node: onnx.NodeProto) -> None:
        op = node.op_type
        attrs: dict[str, Any] = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        c = Call(node, attrs, list(node.input), node.output[0] if node.output else "")
        for extra in node.output[1:]:
            if extra and self.uses[extra] > 0:
                raise self.unsupported(node, f"its extra output {extra!r} is used")
        if op in _ACTIVATION_OPS:
            if op == "Sigmoid" and self.fuse_silu(node):
                return
            self.emit(Activation(_ACTIVATION_OPS[op]), c.ins[:1], c.out)
        elif op in _UNARY_OPS:
            self.emit(ops.Unary(_UNARY_OPS[op]), c.ins[:1], c.out)
        elif op in _BINARY_OPS:
            self.binary(_BINARY_OPS[op], c.ins[0], c.ins[1], c.out)
        elif op in _ATTRIBUTE_OPS:
            factory, n_ins = _ATTRIBUTE_OPS[op]
            self.emit(factory(attrs), c.ins if n_ins is None else c.ins[:n_ins], c.out)
        else:
            handler: Callable[[Call], None] | None = getattr(self, f"_op_{op}", None)
            if handler is None:
                raise UnsupportedOperatorError(
                    f"unsupported ONNX operator {op!r} (opset {self.opset}) at node {node.name!r}"
                )
            handler(c)

    # ----- elementwise ----------------------------------------------------------------------
    def _op_Identity(self, c: Call) -> None:
        self.alias[c.out] = self.name(c.ins[0])

    def _op_Dropout(self, c: Call) -> None:
        ins = c.ins
        training = len(ins) > 2 and bool(ins[2])
        if training and (not self.is_const(ins[2]) or bool(self.val(ins[2]).item())):
            raise self.unsupported(c.node, "training_mode must be a constant false")
        self.alias[c.out] = self.name(ins[0])

    def _op_Clip(self, c: Call) -> None:
        has = [len(c.ins) > k and bool(c.ins[k]) for k in (1, 2)]
        bounds = [c.ins[k] for k in (1, 2) if has[k - 1]]
        self.emit(ops.Clip(has[0], has[1]), [c.ins[0], *bounds], c.out)

    # ----- linear ---------------------------------------------------------------------------
    def _left_dense(self, weight: nn.Parameter, data: str, out: str, scale: float = 1.0) -> str:
        """scale * weight @ data on the last two axes, as transpose -> Dense -> transpose."""
        r = self.val(data).ndim
        perm = (*range(r - 2), r - 1, r - 2)
        t = self.emit(graph.Transpose(perm), [data], self.tmp(out))
        y = self.emit(Dense(weight, None, weight_scale=scale), [t], self.tmp(out))
        return self.emit(graph.Transpose(perm), [y], out)

    def _op_MatMul(self, c: Call) -> None:
        a, b, out = c.ins[0], c.ins[1], c.out
        ca, cb = self.is_const(a), self.is_const(b)
        if ca == cb:
            self.emit(ops.MatMul(), [a, b], out)
        elif cb:
            w = self.val(b)
            if w.ndim == 1:
                p, f = self.param(b, lambda t: t.reshape(1, -1))
                y = self.emit(Dense(p, None, weight_scale=f), [a], self.tmp(out))
                self.emit(graph.Squeeze((-1,)), [y], out)
            elif w.ndim == 2:
                weight, f = self.param(b, lambda t: t.T)
                fuse = self.fusable_bias(out, int(weight.shape[0]))
                if fuse is None:
                    self.emit(Dense(weight, None, weight_scale=f), [a], out)
                else:
                    j, bias, fused_out = fuse
                    pb, fb = self.param(bias, lambda t: t.reshape(-1))
                    dense = Dense(weight, pb, weight_scale=f, bias_scale=fb)
                    self.emit(dense, [a], fused_out)
                    self.skip.add(j)
            else:
                raise self.unsupported(c.node, f"a {w.ndim}-D weight initializer")
        else:
            w = self.val(a)
            if w.ndim != 2 or self.val(b).ndim < 2:
                raise self.unsupported(c.node, f"a {w.ndim}-D left weight")
            p, f = self.param(a)
            self._left_dense(p, b, out, f)

    def _op_Gemm(self, c: Call) -> None:
        attrs, ins, out = c.attrs, c.ins, c.out
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        ta, tb = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
        a, b = ins[0], ins[1]
        bias_in = ins[2] if len(ins) > 2 and ins[2] else None
        ca, cb = self.is_const(a), self.is_const(b)
        c_const = bias_in is not None and self.is_const(bias_in)
        if ca == cb:
            y = self.emit(ops.GemmData(alpha, beta, ta, tb), [a, b], self.tmp(out))
        elif cb:
            x = self.emit(graph.Transpose((1, 0)), [a], self.tmp(out)) if ta else a
            weight, fw = self.param(b, (lambda t: t) if tb else (lambda t: t.T))
            n_out = int(weight.shape[0])
            bias, fb = None, 1.0
            if bias_in is not None and c_const:
                cv = self.val(bias_in)
                if cv.numel() == n_out and cv.shape[-1:] == (n_out,) and cv.ndim <= 2:
                    bias, fb = self.param(bias_in, lambda t: t.reshape(-1))
                    bias_in = None
            mod = Dense(weight, bias, weight_scale=alpha * fw, bias_scale=beta * fb)
            y = self.emit(mod, [x], out if bias_in is None else self.tmp(out))
        else:
            x = self.emit(graph.Transpose((1, 0)), [b], self.tmp(out)) if tb else b
            weight, fw = self.param(a, (lambda t: t.T) if ta else (lambda t: t))
            target = out if bias_in is None else self.tmp(out)
            y = self._left_dense(weight, x, target, alpha * fw)
        if bias_in is None:
            if y != out:
                self.alias[out] = y
        elif c_const and not (ca and cb) and self.is_param(bias_in):
            pc, fc = self.param(bias_in)
            self.emit(Bias(pc, scale=beta * fc), [y], out)
        else:
            scaled = self.emit(ops.Binary("mul"), [bias_in, self.const(beta, out)], self.tmp(out))
            self.emit(ops.Binary("add"), [y, scaled], out)

    # ----- convolution and pooling ----------------------------------------------------------
    def _spatial_pads(
        self, c: Call, x: str, kernel: list[int], strides: list[int], dilations: list[int]
    ) -> tuple[int, int, int, int]:
        """ONNX pads [h_begin, w_begin, h_end, w_end], resolving auto_pad from the input shape."""
        auto = _text(c.attrs, "auto_pad", "NOTSET")
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

    # ----- constants and shapes -------------------------------------------------------------
    def _op_Constant(self, c: Call) -> None:
        attrs = c.attrs
        if "value" in attrs:
            self.consts[c.out] = graph.tensor_from_proto(attrs["value"])
        elif "value_float" in attrs or "value_floats" in attrs:
            v = attrs.get("value_float", attrs.get("value_floats"))
            self.consts[c.out] = torch.tensor(v, dtype=torch.float64)
        elif "value_int" in attrs or "value_ints" in attrs:
            v = attrs.get("value_int", attrs.get("value_ints"))
            self.consts[c.out] = torch.tensor(v, dtype=torch.int64)
        else:
            raise self.unsupported(c.node, f"attribute {sorted(attrs)}")

    def _op_ConstantOfShape(self, c: Call) -> None:
        if "value" in c.attrs:
            value = graph.tensor_from_proto(c.attrs["value"])
            if value.numel() != 1:
                raise ModelFormatError(
                    f"ConstantOfShape node {c.node.name!r} has a value of {value.numel()} "
                    "elements; it must have exactly 1"
                )
        else:
            value = torch.zeros((), dtype=torch.float64)
        step = ops.ConstantOfShape(value)
        if self.is_const(c.ins[0]):  # like a Constant node: never derives from an initializer
            self.consts[c.out] = step(self.val(c.ins[0]))
        else:
            self.emit(step, c.ins[:1], c.out)

    def _op_Reshape(self, c: Call) -> None:
        allowzero = bool(c.attrs.get("allowzero", 0))
        if self.is_const(c.ins[1]):
            target = tuple(self.ints(c.ins[1], "shape", c.node))
            self.emit(graph.Reshape(target, allowzero, self.export_batch), c.ins[:1], c.out)
        else:
            self.emit(graph.Reshape(None, allowzero, None), c.ins[:2], c.out)

    def _op_Expand(self, c: Call) -> None:
        if self.is_const(c.ins[1]):
            target = tuple(self.ints(c.ins[1], "shape", c.node))
            self.emit(ops.Expand(target, self.export_batch), c.ins[:1], c.out)
        else:
            self.emit(ops.Expand(None, None), c.ins[:2], c.out)

    def _op_Squeeze(self, c: Call) -> None:
        if len(c.ins) > 1 and c.ins[1]:
            axes = tuple(self.ints(c.ins[1], "axes", c.node))
        else:  # the probe batch has 2 samples, so the batch axis is never squeezed
            axes = tuple(i for i, s in enumerate(self.val(c.ins[0]).shape) if s == 1)
        self.emit(graph.Squeeze(axes), c.ins[:1], c.out)

    def _op_Unsqueeze(self, c: Call) -> None:
        self.emit(graph.Unsqueeze(tuple(self.ints(c.ins[1], "axes", c.node))), c.ins[:1], c.out)

    def _op_Gather(self, c: Call) -> None:
        if self.val(c.ins[1]).is_floating_point():
            raise self.unsupported(c.node, "float indices")
        self.emit(ops.Gather(int(c.attrs.get("axis", 0))), c.ins[:2], c.out)

    def _op_Slice(self, c: Call) -> None:
        ins, node = c.ins, c.node
        starts = self.ints(ins[1], "starts", node)
        ends = self.ints(ins[2], "ends", node)
        rank = self.val(ins[0]).ndim
        has = [len(ins) > k and bool(ins[k]) for k in (3, 4)]
        axes = self.ints(ins[3], "axes", node) if has[0] else list(range(len(starts)))
        steps = self.ints(ins[4], "steps", node) if has[1] else [1] * len(starts)
        if 0 in steps:
            raise self.unsupported(node, "a step of 0")
        specs = tuple(
            (a % rank, s, e, st) for a, s, e, st in zip(axes, starts, ends, steps, strict=True)
        )
        self.emit(ops.Slice(specs), ins[:1], c.out)

    def _op_Cast(self, c: Call) -> None:
        to = int(c.attrs["to"])
        if to in graph.FLOAT_TYPES:
            self.emit(ops.Cast(to_float=True), c.ins[:1], c.out)
        elif to in graph.INT_TYPES and not self.val(c.ins[0]).is_floating_point():
            self.emit(ops.Cast(to_float=False), c.ins[:1], c.out)
        else:
            name = onnx.TensorProto.DataType.Name(to)
            raise self.unsupported(c.node, f"cast to {name} (only casts to float are supported)")

    # ----- reductions -----------------------------------------------------------------------
    def _reduce(self, kind: str, c: Call, since: int) -> None:
        keep = bool(c.attrs.get("keepdims", 1))
        if self.opset >= since:
            has = len(c.ins) > 1 and bool(c.ins[1])
            axes = self.ints(c.ins[1], "axes", c.node) if has else []
        else:
            axes = [int(a) for a in c.attrs.get("axes", [])]
        if not axes and int(c.attrs.get("noop_with_empty_axes", 0)):
            self.alias[c.out] = self.name(c.ins[0])
            return
        self.emit(ops.Reduce(kind, tuple(axes) if axes else None, keep), c.ins[:1], c.out)

    def _op_ReduceMean(self, c: Call) -> None:
        self._reduce("mean", c, since=18)

    def _op_ReduceSum(self, c: Call) -> None:
        self._reduce("sum", c, since=13)
