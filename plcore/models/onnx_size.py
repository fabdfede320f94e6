"""The parameter count of an ONNX model from its graph's TensorProto dims (no conversion).

Counts what :mod:`plcore.models.onnx_params` trains by default: the float initializers of the
main graph with at least two entries, except the running mean and variance of a
BatchNormalization (its inputs 3 and 4). The count is the product of each initializer's
``dims``; the tensor data is never decoded, so a graph that declares huge initializers is sized
(and refused by ``service.guards``) before anything is allocated.
"""

from __future__ import annotations

import math

import onnx
from google.protobuf.message import DecodeError

_FLOAT_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
    }
)


def onnx_param_count_of(model: onnx.ModelProto) -> int:
    """m: the entries of the default-trainable initializers of ``model`` (module docstring)."""
    running_stats = {
        name
        for node in model.graph.node
        if node.op_type == "BatchNormalization"
        for name in node.input[3:5]
    }
    return sum(
        n
        for t in model.graph.initializer
        if t.data_type in _FLOAT_TYPES
        and t.name not in running_stats
        and (n := math.prod(max(int(d), 0) for d in t.dims)) >= 2
    )


def onnx_param_count(data: bytes) -> int | None:
    """m of the ONNX model in ``data``; None when the bytes do not parse (loading reports it)."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError):
        return None
    return onnx_param_count_of(model)
