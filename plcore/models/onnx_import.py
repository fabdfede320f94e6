"""Load an ONNX model (bytes) into a :class:`plcore.models.base.Model`, with our own importer.

The graph runs as a small interpreter (:class:`plcore.models.onnx_graph.OnnxGraphModule`): one
``nn.Module`` that walks the nodes in topological order, float64 throughout, with the trainable
parameters held by the layers of :mod:`plcore.models.layers`.

Supported operators (default domain, opsets 13 to 23; tested at 13 to 21)
    Gemm, MatMul, Add, Sub, Mul, Div, Pow, Neg, Exp, Log, Sqrt, Abs, Cos, Reciprocal, Sin, Tanh,
    Erf, Sigmoid, Softplus, Relu, Gelu (approximate none / tanh), Clip (min / max as inputs),
    Min, Max, Where, Identity, Dropout (inference), Constant, ConstantOfShape, Cast (to float;
    integer to integer), Flatten, Reshape (allowzero), Expand, Transpose, Concat, Squeeze,
    Unsqueeze, Shape (start / end), Gather, Slice, Conv (2-D, any auto_pad), AveragePool and
    MaxPool (2-D, ceil_mode only where it changes nothing), GlobalAveragePool, GlobalMaxPool,
    BatchNormalization (inference), LayerNormalization, Softmax, LogSoftmax, ReduceMean,
    ReduceSum. Anything else raises :class:`UnsupportedOperatorError` naming the op, the opset
    and the node. The per-op conversion is :mod:`plcore.models.onnx_convert`; the LayerNorm that
    exports before opset 17 write out in ReduceMean / Sub / Pow / Sqrt / Div becomes one
    normalisation step (:mod:`plcore.models.onnx_convert_nn`), like LayerNormalization, and the
    exact GELU that exports before opset 20 write out in Div / Erf / Add / Mul one GELU
    activation, like Gelu.

Activations and smoothness
    ``Model.activations`` lists the elementwise activations met (Gelu approximate="tanh" as
    ``gelu_tanh``, which is not a layer of :mod:`plcore.models.layers`, so the analytic bound
    does not apply to it). Relu, Abs, Clip, Min, Max, MaxPool and GlobalMaxPool are not twice
    differentiable: they are listed in ``Model.nonsmooth_ops`` and make ``Model.smooth`` false.
    Where is smooth in its data inputs: no supported op computes a condition from data values.

Which tensors are trainable (the parameter rule; CONTRACT.md "Parameterization")
    The trainable tensors are the graph's float initializers themselves, with their stored
    values. Arithmetic applied to an initializer in the graph stays part of the model and is never
    folded into a new parameter, so d F / d initializer, and with it the tangent kernel, is the
    graph's own. How (:mod:`plcore.models.onnx_params`): a scalar factor (Mul / Div by a scalar
    constant, Neg) is carried by the layer that uses the weight (``Dense.weight_scale``,
    ``Bias.scale``, ...); pure layout ops on a weight (Transpose, Reshape, Flatten, Squeeze,
    Unsqueeze) are folded, which only permutes the entries of the parameter and leaves K
    unchanged; any other computation on an initializer (a non-scalar Mul, Exp of a log-scale,
    Div or Pow by an initializer, two initializers combined) runs at run time on the parameter.

    Weight slots (the parameter lives in a layer of :mod:`plcore.models.layers`): the weight of
    MatMul / Gemm against data (B, or A for a left multiplication), the C input of Gemm, W and B
    of Conv, scale and B of BatchNormalization and LayerNormalization -> Dense / Conv2d / Scale /
    Bias (Gemm transposes are folded into the stored weight, alpha and beta multiply the
    scales; an Add of a bias vector right after a MatMul is fused into the Dense layer); an
    operand of Add, Sub or Mul whose other operand is data -> Bias (Sub: scale -1; c - x becomes
    Neg then Bias) or Scale.

    Default trainable set: every float initializer with at least 2 elements that the output
    depends on, whatever op it feeds. Not trainable by default: BatchNormalization running
    mean and variance (buffers, never trainable), integer tensors (never), size-1 initializers,
    and float values of ``Constant`` nodes used as a weight (parameters with
    ``requires_grad=False``). The options ``trainable`` / ``frozen`` (initializer names or glob
    patterns; :func:`plcore.models.params.select_parameters`) override the default. An
    initializer used by several nodes is one shared parameter (tied weights): its kernel is the
    sum over its uses. ``Model.metadata["parameter_sources"]`` maps each module parameter name
    to its initializer name; the report lists initializer names.

    Exporter folding: ``torch.onnx.export`` with its default ``do_constant_folding=True`` folds
    ``0.1 * b`` into a new initializer named like ``onnx::Add_21``; the graph's own
    parameterization then differs from the torch module's and no importer can undo it.
    Initializers named ``onnx::*`` are reported in ``Model.notes``; export with
    ``do_constant_folding=False`` to keep your parameterization.

Batch
    Axis 0 of the one graph input is the batch; it may be symbolic or fixed. The other input
    axes must be fixed and give ``Model.input_shape``. Batch rule for Reshape: when the target
    shape is a load-time constant, the graph input has a fixed batch size B and the target's
    entry 0 equals B, entry 0 is replaced by the data's leading size at run time, so a graph
    exported with batch 1 runs on n samples; the same rule applies to an Expand target of the
    data's rank. Shape-derived targets (Shape -> Gather -> Concat -> Reshape) work as they are.
    The output is flattened to (n, k).

Security
    onnx >= 1.21 is required. The bytes are parsed in memory (never from a path, never with
    external data); any tensor with external data is refused (initializers, sparse initializers,
    Constant attributes, subgraphs, functions); nodes outside the default domain are refused;
    functions and subgraphs (If / Loop / Scan) are unsupported; byte and node caps raise
    :class:`UnsafeModelError`, the parameter cap :class:`ResourceLimitError`. The proto is never
    written anywhere.

After loading, the module runs twice on a seeded uniform [0, 1) probe batch: the outputs must be
bitwise equal (else :class:`NonDeterministicModelError`) and finite (else
:class:`ModelFormatError`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import onnx
import torch
from google.protobuf.message import DecodeError

from plcore.errors import (
    ModelFormatError,
    NonDeterministicModelError,
    ResourceLimitError,
    UnsafeModelError,
    UnsupportedOperatorError,
)
from plcore.models.base import Model
from plcore.models.onnx_convert import GraphBuilder
from plcore.models.onnx_graph import tensor_from_proto

MIN_ONNX_VERSION = (1, 21)
MIN_OPSET, MAX_OPSET = 13, 23
_DEFAULT_DOMAINS = ("", "ai.onnx")
_PROBE_SEED = 0


@dataclass(frozen=True)
class OnnxLimits:
    """Caps applied before and while loading an untrusted ONNX model.

    Attributes:
        max_bytes: largest accepted serialized model (UnsafeModelError above it).
        max_nodes: most nodes in the graph (UnsafeModelError above it).
        max_params: most tensor elements stored in initializers and Constant nodes, which bounds
            the trainable parameters (ResourceLimitError above it).
    """

    max_bytes: int = 256 * 1024 * 1024
    max_nodes: int = 10_000
    max_params: int = 50_000_000


def require_onnx_version(version: str) -> None:
    """Raise UnsafeModelError when the installed onnx is older than 1.21 (known CVEs)."""
    match = re.match(r"(\d+)\.(\d+)", version)
    found = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if found < MIN_ONNX_VERSION:
        raise UnsafeModelError(
            f"onnx {version} is installed; loading untrusted models needs onnx >= "
            f"{MIN_ONNX_VERSION[0]}.{MIN_ONNX_VERSION[1]}"
        )


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def _all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    for g in _graphs(model.graph):
        yield from g.node
    for f in model.functions:
        yield from f.node


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for g in _graphs(model.graph):
        yield from g.initializer
        for sp in g.sparse_initializer:
            yield sp.values
            yield sp.indices
    for node in _all_nodes(model):
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sp in [attr.sparse_tensor, *attr.sparse_tensors]:
                yield sp.values
                yield sp.indices


def _check_safety(model: onnx.ModelProto, limits: OnnxLimits) -> None:
    elements = 0
    for t in _all_tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) > 0:
            where = {e.key: e.value for e in t.external_data}.get("location", "?")
            raise UnsafeModelError(
                f"tensor {t.name!r} keeps its data outside the model (external data at "
                f"{where!r}); external data is refused"
            )
        n = 1
        for d in t.dims:
            n *= max(int(d), 0)
        elements += n
    n_nodes = 0
    for node in _all_nodes(model):
        n_nodes += 1
        if node.domain not in _DEFAULT_DOMAINS:
            raise UnsafeModelError(
                f"node {node.name!r} ({node.op_type}) uses the custom domain {node.domain!r}; "
                "only the default ONNX domain is accepted"
            )
    if n_nodes > limits.max_nodes:
        raise UnsafeModelError(
            f"the model has {n_nodes:,} nodes, over the cap of {limits.max_nodes:,}"
        )
    if elements > limits.max_params:
        raise ResourceLimitError(
            f"the model stores {elements:,} tensor elements, over the parameter cap of "
            f"{limits.max_params:,}"
        )
    if len(model.functions) > 0:
        names = [f.name for f in model.functions]
        raise UnsupportedOperatorError(f"model-local ONNX functions are not supported: {names}")
    for node in model.graph.node:
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            raise UnsupportedOperatorError(
                f"unsupported ONNX operator {node.op_type!r} at node {node.name!r}: "
                "subgraphs (If / Loop / Scan) are not supported"
            )
    if len(model.graph.sparse_initializer) > 0:
        raise UnsupportedOperatorError("sparse initializers are not supported")


def _parse(data: bytes, limits: OnnxLimits) -> onnx.ModelProto:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ModelFormatError(f"ONNX model must be bytes, got {type(data).__name__}")
    if len(data) > limits.max_bytes:
        raise UnsafeModelError(
            f"the model is {len(data):,} bytes, over the cap of {limits.max_bytes:,} bytes"
        )
    require_onnx_version(onnx.__version__)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFormatError(f"the bytes are not a valid ONNX model: {exc}") from exc
    _check_safety(model, limits)
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as exc:  # checker raises ValidationError and, on odd protos, others
        raise ModelFormatError(f"the bytes are not a valid ONNX model: {exc}") from exc
    return model


def _opset(model: onnx.ModelProto) -> int:
    versions = [int(o.version) for o in model.opset_import if o.domain in _DEFAULT_DOMAINS]
    if not versions:
        raise ModelFormatError("the model does not import the default ONNX opset")
    opset = max(versions)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedOperatorError(
            f"ONNX opset {opset} is not supported; supported opsets are {MIN_OPSET} to {MAX_OPSET}"
        )
    return opset


def _input_spec(model: onnx.ModelProto) -> tuple[str, tuple[int, ...], int | None]:
    """(name, per-sample shape, fixed export batch size or None) of the one graph input."""
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    if len(inputs) != 1:
        raise UnsupportedOperatorError(
            f"the graph must have exactly one input (the batch of samples); it has "
            f"{len(inputs)}: {[i.name for i in inputs]}"
        )
    if len(graph.output) != 1:
        raise UnsupportedOperatorError(
            f"the graph must have exactly one output; it has {len(graph.output)}: "
            f"{[o.name for o in graph.output]}"
        )
    inp = inputs[0]
    tt = inp.type.tensor_type
    if not inp.type.HasField("tensor_type") or not tt.HasField("shape"):
        raise ModelFormatError(f"graph input {inp.name!r} has no tensor shape")
    if tt.elem_type not in (
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
    ):
        name = onnx.TensorProto.DataType.Name(tt.elem_type)
        raise UnsupportedOperatorError(
            f"graph input {inp.name!r} has element type {name}; need float"
        )
    dims = list(tt.shape.dim)
    if len(dims) < 2:
        raise ModelFormatError(
            f"graph input {inp.name!r} has rank {len(dims)}; need (batch, features...)"
        )
    shape: list[int] = []
    for axis, d in enumerate(dims[1:], start=1):
        if not d.HasField("dim_value") or d.dim_value <= 0:
            sym = d.dim_param or "?"
            raise ModelFormatError(
                f"graph input {inp.name!r} has a symbolic dimension {sym!r} at axis {axis}; only "
                "the batch axis 0 may be symbolic"
            )
        shape.append(int(d.dim_value))
    batch = (
        int(dims[0].dim_value) if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    )
    return inp.name, tuple(shape), batch


def load_onnx_model(data: bytes, *, limits: OnnxLimits | None = None) -> Model:
    """Import ONNX bytes as a float64 :class:`Model` (see the module docstring for the rules).

    Raises:
        ModelFormatError: unreadable or invalid ONNX, symbolic feature dims, non-finite outputs.
        UnsupportedOperatorError: an op, opset, attribute or graph shape we do not implement.
        UnsafeModelError: external data, custom domains, over the byte or node caps.
        ResourceLimitError: over the parameter cap.
        NonDeterministicModelError: two runs on the same input differ.
    """
    limits = limits or OnnxLimits()
    proto = _parse(data, limits)
    opset = _opset(proto)
    input_name, input_shape, export_batch = _input_spec(proto)
    initializers = {t.name: tensor_from_proto(t) for t in proto.graph.initializer}
    gen = torch.Generator().manual_seed(_PROBE_SEED)
    probe = torch.rand((2, *input_shape), generator=gen, dtype=torch.float64)
    builder = GraphBuilder(proto.graph, opset, input_name, probe, export_batch, initializers)
    output_name = proto.graph.output[0].name
    try:
        module = builder.build(output_name)
    except (RuntimeError, IndexError, ValueError, TypeError, KeyError) as exc:
        raise ModelFormatError(
            f"the ONNX graph cannot be evaluated on a probe batch of shape {tuple(probe.shape)}: "
            f"{exc}"
        ) from exc
    module = module.to(torch.float64).eval()
    sources = builder.tracker.finish(module)
    n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    if n_params > limits.max_params:
        raise ResourceLimitError(f"the model has {n_params:,} parameters, over the cap")
    output_dim = _check_outputs(module, input_shape, gen)
    activations = tuple(dict.fromkeys(builder.activations))
    nonsmooth = tuple(dict.fromkeys(builder.nonsmooth))
    return Model(
        module=module,
        input_shape=input_shape,
        output_dim=output_dim,
        format="onnx",
        sha256=hashlib.sha256(bytes(data)).hexdigest(),
        activations=activations,
        smooth=not nonsmooth,
        nonsmooth_ops=nonsmooth,
        output_activation=builder.output_activation(output_name),
        description=(
            f"ONNX graph: {len(proto.graph.node)} nodes, opset {opset}, {n_params:,} params"
        ),
        metadata={
            "opset": opset,
            "ir_version": int(proto.ir_version),
            "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "n_nodes": len(proto.graph.node),
            "export_batch": export_batch,
            "parameter_sources": sources,
            "parameter_shapes": {
                init: tuple(int(d) for d in builder.tracker.raw[init].shape)
                for init in sources.values()
            },
        },
        notes=_folding_notes(sources.values()) + builder.tracker.constant_weight_notes(),
    )


def _folding_notes(inits: Iterable[str]) -> tuple[str, ...]:
    """A warning when parameters come from initializers that torch.onnx.export created by
    constant folding (named ``onnx::<Op>_<n>``)."""
    folded = sorted({n for n in inits if n.startswith("onnx::")})
    if not folded:
        return ()
    shown = ", ".join(repr(n) for n in folded[:5]) + (", ..." if len(folded) > 5 else "")
    return (
        f"initializers {shown} look constant-folded by the exporter: if they were computed from "
        "your parameters (a scale such as 0.1 * b; a transpose is harmless), the tangent kernel "
        "is that of the folded tensors, not your model's; export with "
        "torch.onnx.export(..., do_constant_folding=False) to keep your parameterization",
    )


def _check_outputs(
    module: torch.nn.Module, input_shape: tuple[int, ...], gen: torch.Generator
) -> int:
    """Run twice on a seeded probe: outputs must be (n, k), bitwise equal and finite; returns k."""
    n = 3
    X = torch.rand((n, *input_shape), generator=gen, dtype=torch.float64)
    try:
        with torch.no_grad():
            y1, y2 = module(X), module(X)
    except (RuntimeError, IndexError, ValueError) as exc:
        raise ModelFormatError(
            f"the ONNX graph fails on a batch of {n} samples (is axis 0 the batch?): {exc}"
        ) from exc
    if y1.shape[0] != n:
        raise ModelFormatError(
            f"the output's first axis has size {y1.shape[0]} for a batch of {n}; "
            "it must be the batch"
        )
    if not bool(torch.isfinite(y1).all()):
        raise ModelFormatError("the model's outputs are not finite on a uniform [0, 1) probe input")
    if not torch.equal(y1, y2):
        diff = float((y1 - y2).abs().max())
        raise NonDeterministicModelError(
            f"two runs on the same input differ (max abs difference {diff:.3g})"
        )
    return int(y1.shape[1])
