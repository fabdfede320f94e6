"""The interpreter module that runs an imported ONNX graph, and its builder.

:class:`OnnxGraphModule` holds an ordered list of steps (submodules) and their wiring by value
name; ``forward`` walks them in topological order over an environment of named tensors. The
builder (:class:`GraphBuilder`) turns ONNX nodes into steps one by one and runs every step once
on a probe batch as it goes, so that each value's shape is known at load time (used for auto_pad,
BatchNormalization broadcasting and Squeeze without axes). A step whose inputs are all load-time
constants is evaluated once and its result kept as a constant (constant folding).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from plcore.errors import ModelFormatError, UnsupportedOperatorError
from plcore.models import onnx_ops as ops
from plcore.models.layers import Activation, Bias, Conv2d, Dense, Scale

_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
}
_INT_TYPES = {
    onnx.TensorProto.INT64,
    onnx.TensorProto.INT32,
    onnx.TensorProto.INT16,
    onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8,
    onnx.TensorProto.UINT16,
    onnx.TensorProto.UINT32,
}
_ACTIVATION_OPS = {
    "Tanh": "tanh",
    "Erf": "erf",
    "Sigmoid": "sigmoid",
    "Softplus": "softplus",
    "Relu": "relu",
    "Sin": "sin",
}
_UNARY_OPS = {
    "Neg": "neg",
    "Exp": "exp",
    "Log": "log",
    "Sqrt": "sqrt",
    "Abs": "abs",
    "Cos": "cos",
    "Reciprocal": "reciprocal",
}
_BINARY_OPS = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow"}
_SHAPE_ONLY = (ops.Reshape, ops.Flatten, ops.Squeeze, ops.Unsqueeze, ops.Transpose)
_NONSMOOTH = {"relu": "relu", "abs": "abs", "maxpool": "maxpool"}


def tensor_from_proto(t: onnx.TensorProto) -> Tensor:
    """An ONNX tensor as float64 (float types) or int64 / bool (integer types) torch tensor."""
    arr = numpy_helper.to_array(t)
    if t.data_type in _FLOAT_TYPES:
        return torch.from_numpy(np.array(arr, dtype=np.float64))
    if t.data_type in _INT_TYPES:
        return torch.from_numpy(np.array(arr, dtype=np.int64))
    if t.data_type == onnx.TensorProto.BOOL:
        return torch.from_numpy(np.array(arr, dtype=np.bool_))
    name = onnx.TensorProto.DataType.Name(t.data_type)
    raise UnsupportedOperatorError(f"tensor {t.name!r} has unsupported element type {name}")


class OnnxGraphModule(nn.Module):
    """Runs the steps in order; returns the output value reshaped to (n, k)."""

    def __init__(
        self,
        input_name: str,
        output_name: str,
        steps: list[tuple[str, nn.Module, tuple[str, ...], str]],
        constants: dict[str, Tensor],
    ) -> None:
        super().__init__()
        self.input_name, self.output_name = input_name, output_name
        self.steps = nn.ModuleDict({key: module for key, module, _, _ in steps})
        self.wiring = [(key, ins, out) for key, _, ins, out in steps]
        self.const_keys: list[tuple[str, str]] = []
        for i, (name, value) in enumerate(constants.items()):
            self.register_buffer(f"const_{i}", value.clone())
            self.const_keys.append((name, f"const_{i}"))

    def forward(self, x: Tensor) -> Tensor:
        env: dict[str, Tensor] = {name: getattr(self, key) for name, key in self.const_keys}
        env[self.input_name] = x
        for key, ins, out in self.wiring:
            env[out] = self.steps[key](*(env[i] for i in ins))
        y = env[self.output_name]
        return y.reshape(y.shape[0], -1)


class GraphBuilder:
    """Converts the nodes of one ONNX graph into an :class:`OnnxGraphModule`.

    See :mod:`plcore.models.onnx_import` for the parameter rule. ``export_batch`` is the fixed
    batch size of the graph input (None when symbolic) for the Reshape batch rule.
    """

    def __init__(
        self,
        graph: onnx.GraphProto,
        opset: int,
        input_name: str,
        probe: Tensor,
        export_batch: int | None,
        initializers: dict[str, Tensor],
    ) -> None:
        self.graph, self.opset, self.input_name = graph, opset, input_name
        self.export_batch = export_batch
        self.consts: dict[str, Tensor] = dict(initializers)
        self.from_init: set[str] = set(initializers)
        self.init_names: frozenset[str] = frozenset(initializers)
        self.values: dict[str, Tensor] = {input_name: probe}
        self.alias: dict[str, str] = {}
        self.steps: list[tuple[str, nn.Module, tuple[str, ...], str]] = []
        self.producer: dict[str, nn.Module] = {}
        self.step_inputs: dict[str, tuple[str, ...]] = {}
        self.activations: list[str] = []
        self.nonsmooth: list[str] = []
        self.param_inits: list[str] = []
        self.skip: set[int] = set()
        self.uses: Counter[str] = Counter(i for n in graph.node for i in n.input if i)
        self.uses.update(o.name for o in graph.output)
        self.consumers: dict[str, list[int]] = {}
        for idx, n in enumerate(graph.node):
            for i in n.input:
                self.consumers.setdefault(i, []).append(idx)
        self._tmp = 0

    # ----- values ---------------------------------------------------------------------------
    def name(self, n: str) -> str:
        while n in self.alias:
            n = self.alias[n]
        return n

    def is_const(self, n: str) -> bool:
        return self.name(n) in self.consts

    def val(self, n: str) -> Tensor:
        n = self.name(n)
        if n in self.consts:
            return self.consts[n]
        if n in self.values:
            return self.values[n]
        raise ModelFormatError(f"value {n!r} is used before it is produced")

    def ints(self, n: str, what: str, node: onnx.NodeProto) -> list[int]:
        if not self.is_const(n):
            raise self.unsupported(node, f"input {what!r} must be a constant")
        return [int(v) for v in self.val(n).reshape(-1).tolist()]

    def tmp(self, base: str) -> str:
        self._tmp += 1
        return f"{base}::{self._tmp}"

    def emit(self, module: nn.Module, ins: list[str], out: str) -> str:
        """Add a step (or fold it when every input is a constant and it has no parameters)."""
        ins_r = tuple(self.name(i) for i in ins)
        y = module(*(self.val(i) for i in ins_r))
        has_params = any(True for _ in module.parameters())
        if not has_params and all(i in self.consts for i in ins_r):
            self.consts[out] = y
            if any(i in self.from_init for i in ins_r):
                self.from_init.add(out)
            return out
        self.values[out] = y
        key = f"{type(module).__name__.lower()}_{len(self.steps)}"
        self.steps.append((key, module, ins_r, out))
        self.producer[out] = module
        self.step_inputs[out] = ins_r
        if isinstance(module, Activation):
            self.activations.append(module.name)
        kind = module.name if isinstance(module, Activation) else getattr(module, "kind", "")
        if isinstance(module, ops.MaxPool2d):
            kind = "maxpool"
        if kind in _NONSMOOTH:
            self.nonsmooth.append(_NONSMOOTH[kind])
        return out

    def param(self, n: str) -> Tensor:
        """The value of a constant that becomes a trainable parameter."""
        n = self.name(n)
        if n in self.init_names:
            if self.uses[n] > 1:
                raise UnsupportedOperatorError(
                    f"initializer {n!r} is a trainable weight used by {self.uses[n]} nodes; "
                    "tied (shared) weights are not supported"
                )
            self.param_inits.append(n)
        value = self.consts[n]
        if not value.is_floating_point():
            raise UnsupportedOperatorError(f"weight {n!r} is not a floating-point tensor")
        return value

    def unsupported(self, node: onnx.NodeProto, why: str) -> UnsupportedOperatorError:
        return UnsupportedOperatorError(
            f"unsupported ONNX operator {node.op_type!r} (opset {self.opset}) at node "
            f"{node.name!r}: {why}"
        )

    # ----- driver ---------------------------------------------------------------------------
    def build(self, output_name: str) -> OnnxGraphModule:
        for idx, node in enumerate(self.graph.node):
            if idx in self.skip:
                continue
            self.convert(idx, node)
        out = self.name(output_name)
        if out in self.consts or out not in self.values:
            raise ModelFormatError(f"graph output {output_name!r} does not depend on the input")
        used = {i for _, _, ins, _ in self.steps for i in ins}
        consts = {n: v for n, v in self.consts.items() if n in used}
        return OnnxGraphModule(self.input_name, out, self.steps, consts)

    def output_activation(self, output_name: str) -> str | None:
        """The elementwise activation that produces the output, looking through reshapes."""
        n = self.name(output_name)
        while isinstance(self.producer.get(n), _SHAPE_ONLY):
            n = self.step_inputs[n][0]
        module = self.producer.get(n)
        if isinstance(module, Activation) and module.name != "identity":
            return module.name
        return None

    def convert(self, idx: int, node: onnx.NodeProto) -> None:
        op = node.op_type
        attrs: dict[str, Any] = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        ins = list(node.input)
        out = node.output[0] if node.output else ""
        for extra in node.output[1:]:
            if extra and self.uses[extra] > 0:
                raise self.unsupported(node, f"its extra output {extra!r} is used")
        if op in _ACTIVATION_OPS:
            if op == "Sigmoid" and self._fuse_silu(idx, node):
                return
            self.emit(Activation(_ACTIVATION_OPS[op]), ins[:1], out)
        elif op in _UNARY_OPS:
            self.emit(ops.Unary(_UNARY_OPS[op]), ins[:1], out)
        elif op == "Gelu":
            approx = attrs.get("approximate", b"none")
            approx = approx.decode() if isinstance(approx, bytes) else approx
            mod: nn.Module = Activation("gelu") if approx == "none" else ops.Unary("gelu_tanh")
            self.emit(mod, ins[:1], out)
        elif op in ("Identity", "Dropout"):
            training = op == "Dropout" and len(ins) > 2 and bool(ins[2])
            if training and (not self.is_const(ins[2]) or bool(self.val(ins[2]).item())):
                raise self.unsupported(node, "training_mode must be a constant false")
            self.alias[out] = self.name(ins[0])
        elif op in _BINARY_OPS:
            self._binary(node, _BINARY_OPS[op], out)
        else:
            handler: Callable[[onnx.NodeProto, dict[str, Any], list[str], str], None] | None
            handler = getattr(self, f"_op_{op}", None)
            if handler is None:
                raise UnsupportedOperatorError(
                    f"unsupported ONNX operator {op!r} (opset {self.opset}) at node {node.name!r}"
                )
            if op == "MatMul":
                self._op_MatMul(node, attrs, ins, out, idx)
            else:
                handler(node, attrs, ins, out)

    # ----- fusions --------------------------------------------------------------------------
    def _single_consumer(self, name: str) -> tuple[int, onnx.NodeProto] | None:
        users = self.consumers.get(name, [])
        if len(users) != 1 or self.uses[name] != 1:
            return None
        return users[0], self.graph.node[users[0]]

    def _fuse_silu(self, idx: int, node: onnx.NodeProto) -> bool:
        found = self._single_consumer(node.output[0])
        if found is None:
            return False
        j, mul = found
        if mul.op_type != "Mul" or sorted(mul.input) != sorted([node.input[0], node.output[0]]):
            return False
        self.emit(Activation("silu"), [node.input[0]], mul.output[0])
        self.skip.add(j)
        return True

    def _fusable_bias(self, out: str, n_out: int) -> tuple[int, str, str] | None:
        """An Add right after a MatMul whose other operand is a bias vector of size n_out."""
        found = self._single_consumer(out)
        if found is None:
            return None
        j, add = found
        if add.op_type != "Add" or len(add.input) != 2:
            return None
        other = add.input[1] if add.input[0] == out else add.input[0]
        if not self.is_const(other) or self.name(other) not in self.from_init:
            return None
        b = self.val(other)
        if not b.is_floating_point() or b.numel() != n_out or b.shape[-1:] != (n_out,):
            return None
        return j, other, add.output[0]

    # ----- elementwise ----------------------------------------------------------------------
    def _binary(self, node: onnx.NodeProto, kind: str, out: str) -> None:
        a, b = node.input[0], node.input[1]
        ca, cb = self.is_const(a), self.is_const(b)
        if ca == cb:
            self.emit(ops.Binary(kind), [a, b], out)
            return
        c, d = (a, b) if ca else (b, a)
        cval = self.val(c)
        is_param = (
            kind in ("add", "sub", "mul")
            and cval.is_floating_point()
            and cval.numel() >= 2
            and self.name(c) in self.from_init
        )
        if not is_param:
            self.emit(ops.Binary(kind), [a, b], out)
        elif kind == "add":
            self.emit(Bias(self.param(c)), [d], out)
        elif kind == "mul":
            self.emit(Scale(self.param(c)), [d], out)
        elif c == b:  # x - c
            self.emit(Bias(self.param(c), scale=-1.0), [d], out)
        else:  # c - x = (-x) + c
            neg = self.emit(ops.Unary("neg"), [d], self.tmp(out))
            self.emit(Bias(self.param(c)), [neg], out)

    # ----- linear ---------------------------------------------------------------------------
    def _left_dense(self, weight: Tensor, data: str, out: str, scale: float = 1.0) -> str:
        """scale * weight @ data on the last two axes, as transpose -> Dense -> transpose."""
        r = self.val(data).ndim
        perm = (*range(r - 2), r - 1, r - 2)
        t = self.emit(ops.Transpose(perm), [data], self.tmp(out))
        y = self.emit(Dense(weight, None, weight_scale=scale), [t], self.tmp(out))
        return self.emit(ops.Transpose(perm), [y], out)

    def _op_MatMul(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str, idx: int
    ) -> None:
        a, b = ins[0], ins[1]
        ca, cb = self.is_const(a), self.is_const(b)
        if ca == cb:
            self.emit(ops.MatMul(), [a, b], out)
        elif cb:
            w = self.val(b)
            if w.ndim == 1:
                y = self.emit(Dense(self.param(b).reshape(1, -1), None), [a], self.tmp(out))
                self.emit(ops.Squeeze((-1,)), [y], out)
            elif w.ndim == 2:
                weight = self.param(b).T.contiguous()
                fuse = self._fusable_bias(out, int(weight.shape[0]))
                if fuse is None:
                    self.emit(Dense(weight, None), [a], out)
                else:
                    j, bias, fused_out = fuse
                    self.emit(Dense(weight, self.param(bias).reshape(-1)), [a], fused_out)
                    self.skip.add(j)
            else:
                raise self.unsupported(node, f"a {w.ndim}-D weight initializer")
        else:
            w = self.val(a)
            if w.ndim != 2 or self.val(b).ndim < 2:
                raise self.unsupported(node, f"a {w.ndim}-D left weight")
            self._left_dense(self.param(a), b, out)

    def _op_Gemm(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        ta, tb = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
        a, b = ins[0], ins[1]
        c = ins[2] if len(ins) > 2 and ins[2] else None
        ca, cb = self.is_const(a), self.is_const(b)
        c_const = c is not None and self.is_const(c)
        if ca == cb:
            y = self.emit(ops.GemmData(alpha, beta, ta, tb), [a, b], self.tmp(out))
        elif cb:
            x = self.emit(ops.Transpose((1, 0)), [a], self.tmp(out)) if ta else a
            w = self.param(b)
            weight = (w if tb else w.T).contiguous()
            n_out = int(weight.shape[0])
            bias = None
            if c is not None and c_const:
                cv = self.val(c)
                if cv.numel() == n_out and cv.shape[-1:] == (n_out,) and cv.ndim <= 2:
                    bias = self.param(c).reshape(-1)
                    c = None
            mod = Dense(weight, bias, weight_scale=alpha, bias_scale=beta)
            y = self.emit(mod, [x], out if c is None else self.tmp(out))
        else:
            x = self.emit(ops.Transpose((1, 0)), [b], self.tmp(out)) if tb else b
            w = self.param(a)
            weight = (w.T if ta else w).contiguous()
            y = self._left_dense(weight, x, out if c is None else self.tmp(out), scale=alpha)
        if c is None:
            if y != out:
                self.alias[out] = y
        elif c_const and not (ca and cb):
            self.emit(Bias(self.param(c), scale=beta), [y], out)
        else:
            scaled = self.emit(ops.Binary("mul"), [c, self._const(beta, out)], self.tmp(out))
            self.emit(ops.Binary("add"), [y, scaled], out)

    def _const(self, value: float, base: str) -> str:
        name = self.tmp(base)
        self.consts[name] = torch.tensor(value, dtype=torch.float64)
        return name

    def _spatial_pads(
        self,
        node: onnx.NodeProto,
        attrs: dict[str, Any],
        x: str,
        kernel: list[int],
        strides: list[int],
        dilations: list[int],
    ) -> tuple[int, int, int, int]:
        """ONNX pads [h_begin, w_begin, h_end, w_end], resolving auto_pad from the input shape."""
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
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
            raise self.unsupported(node, f"auto_pad={auto!r}")
        pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
        return (pads[0], pads[1], pads[2], pads[3])

    def _op_Conv(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        x, wname = ins[0], ins[1]
        if not self.is_const(wname) or self.val(wname).ndim != 4 or self.val(x).ndim != 4:
            raise self.unsupported(node, "only 2-D convolutions with initializer weights")
        w = self.param(wname)
        b = self.param(ins[2]) if len(ins) > 2 and ins[2] else None
        kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
        strides = [int(s) for s in attrs.get("strides", [1, 1])]
        dil = [int(d) for d in attrs.get("dilations", [1, 1])]
        hb, wb, he, we = self._spatial_pads(node, attrs, x, kernel, strides, dil)
        padding = (hb, wb)
        if (hb, wb) != (he, we):
            x = self.emit(ops.Pad((wb, we, hb, he), 0.0), [x], self.tmp(out))
            padding = (0, 0)
        mod = Conv2d(
            w,
            b,
            stride=(strides[0], strides[1]),
            padding=padding,
            dilation=(dil[0], dil[1]),
            groups=int(attrs.get("group", 1)),
        )
        self.emit(mod, [x], out)

    def _pool_geometry(
        self, node: onnx.NodeProto, attrs: dict[str, Any], x: str, dilations: list[int]
    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
        if self.val(x).ndim != 4:
            raise self.unsupported(node, "only 2-D pooling (NCHW input)")
        kernel = [int(k) for k in attrs["kernel_shape"]]
        strides = [int(s) for s in attrs.get("strides", [1, 1])]
        hb, wb, he, we = self._spatial_pads(node, attrs, x, kernel, strides, dilations)
        if int(attrs.get("ceil_mode", 0)):
            spatial = self.val(x).shape[2:]
            for size, k, s, d, p in zip(
                spatial, kernel, strides, dilations, (hb + he, wb + we), strict=True
            ):
                span = size + p - (k - 1) * d - 1
                if span % s != 0:
                    raise self.unsupported(node, "ceil_mode=1 with a partial last window")
        return (kernel[0], kernel[1]), (strides[0], strides[1]), (wb, we, hb, he)

    def _op_AveragePool(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        dil = [int(d) for d in attrs.get("dilations", [1, 1])]
        if dil != [1, 1]:
            raise self.unsupported(node, f"dilations={dil}")
        kernel, strides, pads = self._pool_geometry(node, attrs, ins[0], dil)
        exclude = not int(attrs.get("count_include_pad", 0))
        self.emit(ops.AvgPool2d(kernel, strides, pads, exclude), ins[:1], out)

    def _op_MaxPool(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        dil = [int(d) for d in attrs.get("dilations", [1, 1])]
        kernel, strides, pads = self._pool_geometry(node, attrs, ins[0], dil)
        self.emit(ops.MaxPool2d(kernel, strides, (dil[0], dil[1]), pads), ins[:1], out)

    def _op_GlobalAveragePool(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        self.emit(ops.GlobalAvgPool(), ins[:1], out)

    # ----- normalisation --------------------------------------------------------------------
    def _op_BatchNormalization(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        if int(attrs.get("training_mode", 0)):
            raise self.unsupported(node, "training_mode=1")
        x, scale, bias, mean, var = ins[:5]
        if not all(self.is_const(n) for n in (scale, bias, mean, var)):
            raise self.unsupported(node, "scale, B, mean and var must be initializers")
        rank = self.val(x).ndim
        shape = (-1,) + (1,) * (rank - 2)
        eps = float(attrs.get("epsilon", 1e-5))
        norm = ops.BatchNormFixed(self.val(mean), self.val(var), eps, rank)
        h = self.emit(norm, [x], self.tmp(out))
        h = self.emit(Scale(self.param(scale).reshape(shape)), [h], self.tmp(out))
        self.emit(Bias(self.param(bias).reshape(shape)), [h], out)

    def _op_LayerNormalization(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        axis, eps = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))
        h = self.emit(ops.LayerNormPlain(axis, eps), [ins[0]], self.tmp(out))
        has_bias = len(ins) > 2 and bool(ins[2])
        target = self.tmp(out) if has_bias else out
        if self.is_const(ins[1]):
            h = self.emit(Scale(self.param(ins[1])), [h], target)
        else:
            h = self.emit(ops.Binary("mul"), [h, ins[1]], target)
        if has_bias:
            if self.is_const(ins[2]):
                self.emit(Bias(self.param(ins[2])), [h], out)
            else:
                self.emit(ops.Binary("add"), [h, ins[2]], out)

    def _op_Softmax(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        self.emit(ops.Softmax(int(attrs.get("axis", -1)), log=False), ins[:1], out)

    def _op_LogSoftmax(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        self.emit(ops.Softmax(int(attrs.get("axis", -1)), log=True), ins[:1], out)

    # ----- shapes ---------------------------------------------------------------------------
    def _op_Constant(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        if "value" in attrs:
            self.consts[out] = tensor_from_proto(attrs["value"])
        elif "value_float" in attrs or "value_floats" in attrs:
            v = attrs.get("value_float", attrs.get("value_floats"))
            self.consts[out] = torch.tensor(v, dtype=torch.float64)
        elif "value_int" in attrs or "value_ints" in attrs:
            v = attrs.get("value_int", attrs.get("value_ints"))
            self.consts[out] = torch.tensor(v, dtype=torch.int64)
        else:
            raise self.unsupported(node, f"attribute {sorted(attrs)}")

    def _op_Flatten(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        self.emit(ops.Flatten(int(attrs.get("axis", 1))), ins[:1], out)

    def _op_Reshape(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        allowzero = bool(attrs.get("allowzero", 0))
        if self.is_const(ins[1]):
            target = tuple(self.ints(ins[1], "shape", node))
            self.emit(ops.Reshape(target, allowzero, self.export_batch), ins[:1], out)
        else:
            self.emit(ops.Reshape(None, allowzero, None), ins[:2], out)

    def _op_Transpose(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        perm = attrs.get("perm")
        self.emit(ops.Transpose(None if perm is None else tuple(perm)), ins[:1], out)

    def _op_Concat(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        self.emit(ops.Concat(int(attrs["axis"])), ins, out)

    def _op_Squeeze(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        if len(ins) > 1 and ins[1]:
            axes = tuple(self.ints(ins[1], "axes", node))
        else:  # the probe batch has 2 samples, so the batch axis is never squeezed
            axes = tuple(i for i, s in enumerate(self.val(ins[0]).shape) if s == 1)
        self.emit(ops.Squeeze(axes), ins[:1], out)

    def _op_Unsqueeze(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        self.emit(ops.Unsqueeze(tuple(self.ints(ins[1], "axes", node))), ins[:1], out)

    def _op_Shape(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        start, end = int(attrs.get("start", 0)), attrs.get("end")
        self.emit(ops.ShapeOf(start, None if end is None else int(end)), ins[:1], out)

    def _op_Gather(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        if self.val(ins[1]).is_floating_point():
            raise self.unsupported(node, "float indices")
        self.emit(ops.Gather(int(attrs.get("axis", 0))), ins[:2], out)

    def _op_Slice(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
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
        self.emit(ops.Slice(specs), ins[:1], out)

    def _op_Cast(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        to = int(attrs["to"])
        if to in _FLOAT_TYPES:
            self.emit(ops.Cast(to_float=True), ins[:1], out)
        elif to in _INT_TYPES and not self.val(ins[0]).is_floating_point():
            self.emit(ops.Cast(to_float=False), ins[:1], out)
        else:
            name = onnx.TensorProto.DataType.Name(to)
            raise self.unsupported(node, f"cast to {name} (only casts to float are supported)")

    def _reduce(
        self,
        kind: str,
        node: onnx.NodeProto,
        attrs: dict[str, Any],
        ins: list[str],
        out: str,
        since: int,
    ) -> None:
        keep = bool(attrs.get("keepdims", 1))
        if self.opset >= since:
            has = len(ins) > 1 and bool(ins[1])
            axes = self.ints(ins[1], "axes", node) if has else []
        else:
            axes = [int(a) for a in attrs.get("axes", [])]
        if not axes and int(attrs.get("noop_with_empty_axes", 0)):
            self.alias[out] = self.name(ins[0])
            return
        self.emit(ops.Reduce(kind, tuple(axes) if axes else None, keep), ins[:1], out)

    def _op_ReduceMean(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        self._reduce("mean", node, attrs, ins, out, since=18)

    def _op_ReduceSum(
        self, node: onnx.NodeProto, attrs: dict[str, Any], ins: list[str], out: str
    ) -> None:
        self._reduce("sum", node, attrs, ins, out, since=13)
