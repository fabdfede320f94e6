"""The interpreter that runs an imported ONNX graph, and the op-independent half of its builder.

:class:`OnnxGraphModule` holds an ordered list of steps (submodules) and their wiring by value
name; ``forward`` walks them in topological order over an environment of named tensors. The
layout steps (Flatten, Reshape, Transpose, Squeeze, Unsqueeze), which move entries without
arithmetic, are in :mod:`plcore.models.onnx_layout`; every other parameter-free step is in
:mod:`plcore.models.onnx_ops`.

:class:`GraphState` is the bookkeeping every op conversion shares: value names and aliases, the
load-time constants, the parameters (:meth:`GraphState.param` for weight slots,
:meth:`GraphState.materialize` for the general path, both backed by
:class:`plcore.models.onnx_params.ParameterTracker`), the activations and non-smooth ops met so
far, the Add / Sub / Mul conversion (an initializer against data becomes a Bias or Scale layer),
the fusions that look past the current node (MatMul + Add -> Dense, x * sigmoid(x) -> SiLU), and
the assembly of the module. What each ONNX op becomes is in
:class:`plcore.models.onnx_convert.GraphBuilder`, a subclass.

Every step runs once on a probe batch as it is added (:meth:`GraphState.emit`), so that each
value's shape is known at load time (used for auto_pad, BatchNormalization broadcasting and
Squeeze without axes). A step whose inputs are all load-time constants is evaluated once and its
result kept as a constant (constant folding) - except that a value derived from an initializer
is folded only by layout ops and scalar factors (kept as a parameter expression); any other op on
it runs at run time, so that the parameters stay the initializers themselves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from plcore.errors import ModelFormatError, UnsupportedOperatorError
from plcore.models import onnx_ops as ops
from plcore.models.layers import Activation, Bias, Scale
from plcore.models.onnx_layout import LAYOUT_ONLY
from plcore.models.onnx_params import ParameterTracker

FLOAT_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
    }
)
INT_TYPES = frozenset(
    {
        onnx.TensorProto.INT64,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT16,
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.UINT32,
    }
)
Step = tuple[str, nn.Module, tuple[str, ...], str]


def tensor_from_proto(t: onnx.TensorProto) -> Tensor:
    """An ONNX tensor as float64 (float types) or int64 / bool (integer types) torch tensor."""
    arr = numpy_helper.to_array(t)
    if t.data_type in FLOAT_TYPES:
        return torch.from_numpy(np.array(arr, dtype=np.float64))
    if t.data_type in INT_TYPES:
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
        steps: list[Step],
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


def step_activation(module: nn.Module) -> str | None:
    """The activation name a step reports in ``Model.activations``, if any."""
    if isinstance(module, Activation):
        return module.name
    return getattr(module, "activation", None)


def step_nonsmooth(module: nn.Module) -> str | None:
    """The name a step reports in ``Model.nonsmooth_ops`` when it is not twice differentiable.

    Activations say so through ``ActivationInfo.twice_differentiable``; the steps of
    :mod:`plcore.models.onnx_ops` through a ``nonsmooth`` attribute (None when smooth).
    """
    if isinstance(module, Activation):
        return None if module.info.twice_differentiable else module.name
    return getattr(module, "nonsmooth", None)


class GraphState:
    """The values, constants and steps of one ONNX graph while it is being converted.

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
        self.tracker = ParameterTracker(initializers)
        self.values: dict[str, Tensor] = {input_name: probe}
        self.alias: dict[str, str] = {}
        self.steps: list[Step] = []
        self.producer: dict[str, nn.Module] = {}
        self.step_inputs: dict[str, tuple[str, ...]] = {}
        self.activations: list[str] = []
        self.nonsmooth: list[str] = []
        self.skip: set[int] = set()
        self.uses: Counter[str] = Counter(i for n in graph.node for i in n.input if i)
        self.uses.update(o.name for o in graph.output)
        self.consumers: dict[str, list[int]] = {}
        for idx, n in enumerate(graph.node):
            for i in n.input:
                self.consumers.setdefault(i, []).append(idx)
        self._tmp = 0
        self._refs: dict[str, str] = {}

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

    def const(self, value: float, base: str) -> str:
        """A new float64 scalar constant (not derived from an initializer, so never trainable)."""
        name = self.tmp(base)
        self.consts[name] = torch.tensor(value, dtype=torch.float64)
        return name

    def emit(self, module: nn.Module, ins: list[str], out: str) -> str:
        """Add a step, or fold it when every input is a constant and it has no parameters.

        A fold whose input derives from an initializer is kept only as a parameter expression
        (layout op or scalar factor, :mod:`plcore.models.onnx_params`); any other op on such a
        value runs at run time on the parameter itself (the general path).
        """
        ins_r = tuple(self.name(i) for i in ins)
        vals = [self.val(i) for i in ins_r]
        y = module(*vals)
        has_params = any(True for _ in module.parameters())
        pexpr = self.tracker.pexpr
        if not has_params and all(i in self.consts for i in ins_r):
            if not any(i in pexpr for i in ins_r):
                self.consts[out] = y
                return out
            folded = self.tracker.fold(module, ins_r, vals, y)
            if folded is not None:
                self.consts[out] = y
                pexpr[out] = folded
                return out
        if any(i in pexpr for i in ins_r):
            ins_r = tuple(self.materialize(i) if i in pexpr else i for i in ins_r)
        return self._add_step(module, ins_r, out, y)

    def _add_step(self, module: nn.Module, ins_r: tuple[str, ...], out: str, y: Tensor) -> str:
        self.values[out] = y
        key = f"{type(module).__name__.lower()}_{len(self.steps)}"
        self.steps.append((key, module, ins_r, out))
        self.producer[out] = module
        self.step_inputs[out] = ins_r
        activation, nonsmooth = step_activation(module), step_nonsmooth(module)
        if activation is not None:
            self.activations.append(activation)
        if nonsmooth is not None:
            self.nonsmooth.append(nonsmooth)
        return out

    def materialize(self, n: str) -> str:
        """The run-time value of parameter expression ``n`` (a ParamRef step, made once)."""
        if n not in self._refs:
            ref = self.tracker.param_ref(n)
            self._refs[n] = self._add_step(ref, (), self.tmp(n), ref())
        return self._refs[n]

    def is_param(self, n: str) -> bool:
        """Whether ``n`` derives from a float initializer by layout ops and scalar factors."""
        return self.name(n) in self.tracker.pexpr

    def param(
        self, n: str, slot: Callable[[Tensor], Tensor] = lambda t: t
    ) -> tuple[nn.Parameter, float]:
        """The parameter (in the layout ``slot`` makes of the value) for a weight slot, and the
        factor the layer must multiply it by."""
        n = self.name(n)
        return self.tracker.weight_param(n, self.val(n), slot)

    def unsupported(self, node: onnx.NodeProto, why: str) -> UnsupportedOperatorError:
        return UnsupportedOperatorError(
            f"unsupported ONNX operator {node.op_type!r} (opset {self.opset}) at node "
            f"{node.name!r}: {why}"
        )

    def single_consumer(self, name: str) -> tuple[int, onnx.NodeProto] | None:
        """The one node that reads ``name`` (and no graph output does), or None."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or self.uses[name] != 1:
            return None
        return users[0], self.graph.node[users[0]]

    # ----- the parameter rule for Add / Sub / Mul, and fusions ------------------------------
    def fuse_silu(self, node: onnx.NodeProto) -> bool:
        found = self.single_consumer(node.output[0])
        if found is None:
            return False
        j, mul = found
        if mul.op_type != "Mul" or sorted(mul.input) != sorted([node.input[0], node.output[0]]):
            return False
        self.emit(Activation("silu"), [node.input[0]], mul.output[0])
        self.skip.add(j)
        return True

    def fusable_bias(self, out: str, n_out: int) -> tuple[int, str, str] | None:
        """An Add right after a MatMul whose other operand is a bias vector of size n_out."""
        found = self.single_consumer(out)
        if found is None:
            return None
        j, add = found
        if add.op_type != "Add" or len(add.input) != 2:
            return None
        other = add.input[1] if add.input[0] == out else add.input[0]
        if not self.is_const(other) or not self.is_param(other):
            return None
        b = self.val(other)
        if not b.is_floating_point() or b.numel() != n_out or b.shape[-1:] != (n_out,):
            return None
        return j, other, add.output[0]

    def binary(self, kind: str, a: str, b: str, out: str) -> None:
        ca, cb = self.is_const(a), self.is_const(b)
        if ca == cb:
            self.emit(ops.Binary(kind), [a, b], out)
            return
        k, d = (a, b) if ca else (b, a)
        if kind not in ("add", "sub", "mul") or not self.is_param(k):
            self.emit(ops.Binary(kind), [a, b], out)
            return
        p, f = self.param(k)
        if kind == "add":
            self.emit(Bias(p, scale=f), [d], out)
        elif kind == "mul":
            self.emit(Scale(p, scale=f), [d], out)
        elif k == b:  # x - c
            self.emit(Bias(p, scale=-f), [d], out)
        else:  # c - x = (-x) + c
            neg = self.emit(ops.Unary("neg"), [d], self.tmp(out))
            self.emit(Bias(p, scale=f), [neg], out)

    # ----- result ---------------------------------------------------------------------------
    def module(self, output_name: str) -> OnnxGraphModule:
        """The interpreter over the steps so far, computing ``output_name``."""
        out = self.name(output_name)
        if out in self.consts or out not in self.values:
            raise ModelFormatError(f"graph output {output_name!r} does not depend on the input")
        used = {i for _, _, ins, _ in self.steps for i in ins}
        consts = {n: v for n, v in self.consts.items() if n in used}
        return OnnxGraphModule(self.input_name, out, self.steps, consts)

    def output_activation(self, output_name: str) -> str | None:
        """The elementwise activation that produces the output, looking through reshapes."""
        n = self.name(output_name)
        while isinstance(self.producer.get(n), LAYOUT_ONLY):
            n = self.step_inputs[n][0]
        module = self.producer.get(n)
        if isinstance(module, Activation) and module.name != "identity":
            return module.name
        return None
