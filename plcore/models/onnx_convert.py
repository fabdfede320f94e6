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
from typing import Any

import onnx
import torch
from torch import nn

from plcore.errors import ModelFormatError, UnsupportedOperatorError
from plcore.models import onnx_graph as graph
from plcore.models import onnx_layout as layout
from plcore.models import onnx_ops as ops
from plcore.models.layers import Activation, Bias, Dense
from plcore.models.onnx_convert_nn import Call, SpatialConverter, text_attr

# ONNX op -> name of the Activation layer / Unary kind / Binary kind (the op name in lower case)
_ACTIVATION_OPS = {op: op.lower() for op in ("Tanh", "Erf", "Sigmoid", "Softplus", "Relu", "Sin")}
_UNARY_OPS = {op: op.lower() for op in ("Neg", "Exp", "Log", "Sqrt", "Abs", "Cos", "Reciprocal")}
_BINARY_OPS = {op: op.lower() for op in ("Add", "Sub", "Mul", "Div", "Pow")}


def _perm(attrs: dict[str, Any]) -> tuple[int, ...] | None:
    return None if attrs.get("perm") is None else tuple(attrs["perm"])


def _gelu(attrs: dict[str, Any]) -> nn.Module:
    exact = text_attr(attrs, "approximate", "none") == "none"
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
    "Flatten": (lambda a: layout.Flatten(int(a.get("axis", 1))), 1),
    "Transpose": (lambda a: layout.Transpose(_perm(a)), 1),
    "Concat": (lambda a: ops.Concat(int(a["axis"])), None),
    "GlobalAveragePool": (lambda a: ops.GlobalPool("avg"), 1),
    "GlobalMaxPool": (lambda a: ops.GlobalPool("max"), 1),
    "Max": (lambda a: ops.Extremum("max"), None),
    "Min": (lambda a: ops.Extremum("min"), None),
    "Where": (lambda a: ops.Where(), 3),
}


class GraphBuilder(SpatialConverter):
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
            if self.fuse_gelu(node):
                return
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
        t = self.emit(layout.Transpose(perm), [data], self.tmp(out))
        y = self.emit(Dense(weight, None, weight_scale=scale), [t], self.tmp(out))
        return self.emit(layout.Transpose(perm), [y], out)

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
                self.emit(layout.Squeeze((-1,)), [y], out)
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
            x = self.emit(layout.Transpose((1, 0)), [a], self.tmp(out)) if ta else a
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
            x = self.emit(layout.Transpose((1, 0)), [b], self.tmp(out)) if tb else b
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
            self.emit(layout.Reshape(target, allowzero, self.export_batch), c.ins[:1], c.out)
        else:
            self.emit(layout.Reshape(None, allowzero, None), c.ins[:2], c.out)

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
        self.emit(layout.Squeeze(axes), c.ins[:1], c.out)

    def _op_Unsqueeze(self, c: Call) -> None:
        self.emit(layout.Unsqueeze(tuple(self.ints(c.ins[1], "axes", c.node))), c.ins[:1], c.out)

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
        axes = self.reduce_axes(c.node, since)
        if axes is None:
            raise self.unsupported(c.node, "input 'axes' must be a constant")
        if not axes and int(c.attrs.get("noop_with_empty_axes", 0)):
            self.alias[c.out] = self.name(c.ins[0])
            return
        self.emit(ops.Reduce(kind, tuple(axes) if axes else None, keep), c.ins[:1], c.out)

    def _op_ReduceMean(self, c: Call) -> None:
        if self.fuse_layernorm(c.node):
            return
        self._reduce("mean", c, since=18)

    def _op_ReduceSum(self, c: Call) -> None:
        self._reduce("sum", c, since=13)
