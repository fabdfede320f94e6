"""The ONNX importer: parity with onnxruntime on the zoo, the parameter rule, and refusals."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from plcore.errors import (
    ModelFormatError,
    NonDeterministicModelError,
    ResourceLimitError,
    UnsafeModelError,
    UnsupportedOperatorError,
)
from plcore.models.layers import PARAMETERIZED_LAYERS
from plcore.models.loader import load_model
from plcore.models.onnx_import import (
    OnnxLimits,
    _check_outputs,
    load_onnx_model,
    require_onnx_version,
)
from plcore.models.onnx_params import ParamRef
from tests.plcore.models.onnx_zoo import ZooModel, zoo

ZOO = zoo()
ZOO_IDS = [z.name for z in ZOO]


def expected_trainable(proto: onnx.ModelProto) -> int:
    """The contract's default: sizes of the float initializers with >= 2 entries that some node
    reads, except BatchNormalization running mean and variance (inputs 3 and 4)."""
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    used = {name for node in proto.graph.node for name in node.input}
    stats = {
        node.input[k]
        for node in proto.graph.node
        if node.op_type == "BatchNormalization"
        for k in (3, 4)
    }
    return int(
        sum(
            v.size
            for n, v in inits.items()
            if v.dtype.kind == "f" and v.size >= 2 and n in used and n not in stats
        )
    )


def run_ort(z: ZooModel, X: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(z.onnx_bytes, opts, providers=["CPUExecutionProvider"])
    b = z.fixed_batch or len(X)
    parts = [sess.run(None, {"x": X[i : i + b]})[0] for i in range(0, len(X), b)]
    return np.concatenate([p.reshape(len(p), -1) for p in parts])


def test_zoo_has_at_least_14_models_with_distinct_names() -> None:
    assert len(ZOO) >= 14
    assert len(set(ZOO_IDS)) == len(ZOO)


@pytest.mark.parametrize("z", ZOO, ids=ZOO_IDS)
def test_zoo_model_matches_onnxruntime(z: ZooModel) -> None:
    model = load_onnx_model(z.onnx_bytes)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((z.n_samples_hint, *z.input_shape)).astype(np.float32)
    ref = run_ort(z, X)
    with torch.no_grad():
        ours = model.module(torch.from_numpy(X).to(torch.float64))
    assert ours.dtype == torch.float64
    assert tuple(ours.shape) == (z.n_samples_hint, model.output_dim)
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(ours.numpy(), ref.astype(np.float64), rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("z", ZOO, ids=ZOO_IDS)
def test_zoo_model_trainable_params_are_the_float_weight_initializers(z: ZooModel) -> None:
    model = load_onnx_model(z.onnx_bytes)
    proto = onnx.load_from_string(z.onnx_bytes)
    assert model.n_params == expected_trainable(proto)
    owners = {
        name
        for name, mod in model.module.named_modules()
        if isinstance(mod, (*PARAMETERIZED_LAYERS, ParamRef))
        for _ in mod.parameters(recurse=False)
    }
    for pname, p in model.module.named_parameters():
        assert p.dtype == torch.float64
        assert pname.rsplit(".", 1)[0] in owners, f"{pname} is not held by a layer or ParamRef"
        source = model.metadata["parameter_sources"][pname]
        assert p.requires_grad == (p.numel() >= 2), (pname, source)


@pytest.mark.parametrize("z", ZOO, ids=ZOO_IDS)
def test_zoo_model_fields_and_any_batch_size(z: ZooModel) -> None:
    model = load_onnx_model(z.onnx_bytes)
    assert model.input_shape == z.input_shape
    assert model.format == "onnx"
    assert model.sha256 == hashlib.sha256(z.onnx_bytes).hexdigest()
    assert not model.module.training
    assert model.description.startswith("ONNX graph: ")
    assert f"{model.n_params:,} params" in model.description
    for n in (1, 7):
        X = torch.rand((n, *z.input_shape), dtype=torch.float64)
        assert tuple(model.module(X).shape) == (n, model.output_dim)
    w = model.flat_params()
    X = torch.rand((3, *z.input_shape), dtype=torch.float64)
    assert torch.equal(model.apply_flat(w, X), model.module(X).reshape(-1))


def by_name(name: str) -> ZooModel:
    return next(z for z in ZOO if z.name == name)


def test_activations_and_smoothness_are_reported() -> None:
    silu = load_onnx_model(by_name("torch_mlp_sigmoid_silu_op21").onnx_bytes)
    assert silu.activations == ("sigmoid", "silu") and silu.smooth
    res = load_onnx_model(by_name("torch_resblock_op17").onnx_bytes)
    assert res.nonsmooth_ops == ("relu",) and not res.smooth
    conv = load_onnx_model(by_name("helper_conv_pads_group").onnx_bytes)
    assert "maxpool" in conv.nonsmooth_ops and not conv.smooth


# ----- small graphs for the error branches ------------------------------------------------------
def graph_bytes(
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    *,
    opset: int = 17,
    inputs: list[onnx.ValueInfoProto] | None = None,
    outputs: list[onnx.ValueInfoProto] | None = None,
    check: bool = True,
) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    return model.SerializeToString()


def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    rng = np.random.default_rng(0)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def tanh_mlp_bytes(**kw: object) -> bytes:
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="fc"),
        helper.make_node("Tanh", ["h"], ["y"], name="act"),
    ]
    return graph_bytes(nodes, [weight("W", (3, 2)), weight("b", (2,))], **kw)  # type: ignore[arg-type]


def test_output_activation_is_the_last_elementwise_activation() -> None:
    model = load_onnx_model(tanh_mlp_bytes())
    assert model.output_activation == "tanh"
    assert model.output_dim == 2 and model.n_params == 8


def test_load_model_sniffs_onnx_bytes() -> None:
    model = load_model(tanh_mlp_bytes())
    assert model.format == "onnx" and model.n_params == 8


def test_dropout_and_identity_are_pass_through() -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("Dropout", ["h"], ["d"], name="drop"),
        helper.make_node("Identity", ["d"], ["y"], name="id"),
    ]
    model = load_onnx_model(graph_bytes(nodes, [weight("W", (3, 2))]))
    X = torch.rand(4, 3, dtype=torch.float64)
    W = torch.tensor(numpy_helper.to_array(weight("W", (3, 2))), dtype=torch.float64)
    torch.testing.assert_close(model.module(X), X @ W)


def test_malformed_bytes_are_a_format_error() -> None:
    with pytest.raises(ModelFormatError, match="not a valid ONNX model"):
        load_onnx_model(b"\x08\x07\xff\xff\xff this is not onnx")


def test_truncated_model_is_a_format_error() -> None:
    data = by_name("helper_matmul_add").onnx_bytes
    with pytest.raises(ModelFormatError, match="not a valid ONNX model"):
        load_onnx_model(data[: len(data) // 2])


def test_external_data_initializer_is_refused() -> None:
    proto = onnx.load_from_string(tanh_mlp_bytes())
    t = proto.graph.initializer[0]
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    with pytest.raises(UnsafeModelError, match="external data"):
        load_onnx_model(proto.SerializeToString())


def test_external_data_in_constant_node_is_refused() -> None:
    value = helper.make_tensor("v", TensorProto.FLOAT, [2], [1.0, 2.0])
    value.ClearField("float_data")
    value.data_location = TensorProto.EXTERNAL
    nodes = [
        helper.make_node("Constant", [], ["c"], value=value, name="const"),
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("Add", ["h", "c"], ["y"], name="add"),
    ]
    data = graph_bytes(nodes, [weight("W", (3, 2))], check=False)
    with pytest.raises(UnsafeModelError, match="external data"):
        load_onnx_model(data)


def test_custom_domain_node_is_refused() -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("Evil", ["h"], ["y"], domain="com.example", name="evil"),
    ]
    data = graph_bytes(nodes, [weight("W", (3, 2))], check=False)
    with pytest.raises(UnsafeModelError, match=r"custom domain 'com\.example'"):
        load_onnx_model(data)


def test_unsupported_operator_names_op_opset_and_node() -> None:
    hidden = 2
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R"], ["", "y"], hidden_size=hidden, name="lstm_1"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2, 3])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, hidden])]
    inits = [weight("W", (1, 4 * hidden, 3)), weight("R", (1, 4 * hidden, hidden))]
    data = graph_bytes(nodes, inits, inputs=inputs, outputs=outputs)
    with pytest.raises(
        UnsupportedOperatorError,
        match=r"unsupported ONNX operator 'LSTM' \(opset 17\) at node 'lstm_1'",
    ):
        load_onnx_model(data)


def test_random_operator_is_refused() -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("RandomNormalLike", ["h"], ["r"], name="noise"),
        helper.make_node("Add", ["h", "r"], ["y"], name="add"),
    ]
    with pytest.raises(UnsupportedOperatorError, match=r"'RandomNormalLike'.*'noise'"):
        load_onnx_model(graph_bytes(nodes, [weight("W", (3, 2))]))


def test_nondeterministic_module_is_refused_by_the_output_check() -> None:
    class Noisy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.rand(x.shape, dtype=x.dtype)

    with pytest.raises(NonDeterministicModelError, match="two runs on the same input differ"):
        _check_outputs(Noisy(), (3,), torch.Generator().manual_seed(0))


def test_two_graph_inputs_are_unsupported() -> None:
    nodes = [helper.make_node("Add", ["x", "z"], ["y"], name="add")]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2]),
        helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 2]),
    ]
    with pytest.raises(UnsupportedOperatorError, match=r"exactly one input .* 2: \['x', 'z'\]"):
        load_onnx_model(graph_bytes(nodes, [], inputs=inputs))


def test_two_graph_outputs_are_unsupported() -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["y"], name="fc"),
        helper.make_node("Neg", ["y"], ["z"]),
    ]
    outputs = [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2]),
        helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 2]),
    ]
    with pytest.raises(UnsupportedOperatorError, match="exactly one output"):
        load_onnx_model(graph_bytes(nodes, [weight("W", (3, 2))], outputs=outputs))


def test_node_cap_is_enforced() -> None:
    with pytest.raises(UnsafeModelError, match="2 nodes, over the cap of 1"):
        load_onnx_model(tanh_mlp_bytes(), limits=OnnxLimits(max_nodes=1))


def test_byte_cap_is_enforced() -> None:
    data = tanh_mlp_bytes()
    with pytest.raises(UnsafeModelError, match=f"{len(data):,} bytes, over the cap of 100 bytes"):
        load_onnx_model(data, limits=OnnxLimits(max_bytes=100))


def test_parameter_cap_is_enforced() -> None:
    with pytest.raises(ResourceLimitError, match="8 tensor elements, over the parameter cap of 5"):
        load_onnx_model(tanh_mlp_bytes(), limits=OnnxLimits(max_params=5))


def test_old_opset_is_unsupported() -> None:
    with pytest.raises(UnsupportedOperatorError, match="opset 11 is not supported"):
        load_onnx_model(tanh_mlp_bytes(opset=11))


def test_old_onnx_library_is_refused() -> None:
    require_onnx_version("1.21.0")
    with pytest.raises(UnsafeModelError, match=r"onnx 1.16.1 is installed; .* >= 1.21"):
        require_onnx_version("1.16.1")


def test_symbolic_feature_dimension_is_a_format_error() -> None:
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "d"])]
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], name="fc")]
    with pytest.raises(ModelFormatError, match="symbolic dimension 'd' at axis 1"):
        load_onnx_model(graph_bytes(nodes, [weight("W", (3, 2))], inputs=inputs))


def test_non_finite_outputs_are_refused() -> None:
    two = numpy_helper.from_array(np.asarray(2.0, dtype=np.float32), "two")
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("Sub", ["h", "two"], ["s"], name="sub"),
        helper.make_node("Log", ["s"], ["l"], name="log"),
        helper.make_node("Mul", ["l", "two"], ["y"], name="mul"),
    ]
    W = numpy_helper.from_array(np.full((3, 2), 0.1, dtype=np.float32), "W")
    with pytest.raises(ModelFormatError, match="not finite"):
        load_onnx_model(graph_bytes(nodes, [W, two]))


def test_subgraph_operator_is_unsupported() -> None:
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["o"])],
        "b",
        [],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, ["n", 3])],
    )
    cond = numpy_helper.from_array(np.asarray(True), "cond")
    nodes = [
        helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch, name="if")
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])]
    with pytest.raises(UnsupportedOperatorError, match="'If' at node 'if': subgraphs"):
        load_onnx_model(graph_bytes(nodes, [cond], outputs=outputs))


def test_cast_of_float_data_to_int_is_unsupported() -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("Cast", ["h"], ["y"], to=TensorProto.INT64, name="cast"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT64, ["n", 2])]
    with pytest.raises(UnsupportedOperatorError, match=r"'Cast'.*cast to INT64"):
        load_onnx_model(graph_bytes(nodes, [weight("W", (3, 2))], outputs=outputs))


# ----- Clip, Min / Max, Where, Expand, ConstantOfShape, GlobalMaxPool, Gelu tanh ---------------
@pytest.mark.parametrize(
    ("name", "activations", "nonsmooth"),
    [
        ("torch_mlp_gelu_tanh_op20", ("gelu_tanh",), ()),
        ("torch_mlp_hardtanh_relu6_op13", (), ("clip",)),
        ("helper_clip_min_max_op13", (), ("clip", "max", "min")),
        ("helper_global_maxpool_op13", ("sigmoid",), ("globalmaxpool",)),
        ("helper_where_expand_constantofshape_op17", ("tanh",), ()),
    ],
)
def test_new_ops_report_activations_and_nonsmooth_ops(
    name: str, activations: tuple[str, ...], nonsmooth: tuple[str, ...]
) -> None:
    model = load_onnx_model(by_name(name).onnx_bytes)
    assert model.activations == activations
    assert model.nonsmooth_ops == nonsmooth
    assert model.smooth == (not nonsmooth)


def test_constant_of_shape_of_a_constant_shape_is_a_buffer_not_a_parameter() -> None:
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("ConstantOfShape", ["two"], ["half"], value=value, name="cos"),
        helper.make_node("Add", ["h", "half"], ["y"], name="add"),
    ]
    two = numpy_helper.from_array(np.asarray([2], dtype=np.int64), "two")
    model = load_onnx_model(graph_bytes(nodes, [weight("W", (3, 2)), two]))
    assert model.n_params == 6
    X = torch.rand(4, 3, dtype=torch.float64)
    W = torch.tensor(numpy_helper.to_array(weight("W", (3, 2))), dtype=torch.float64)
    torch.testing.assert_close(model.module(X), X @ W + 0.5)


def test_constant_of_shape_value_with_two_elements_is_a_format_error() -> None:
    value = helper.make_tensor("v", TensorProto.FLOAT, [2], [0.5, 1.0])
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("ConstantOfShape", ["two"], ["c"], value=value, name="cos"),
        helper.make_node("Add", ["h", "c"], ["y"], name="add"),
    ]
    two = numpy_helper.from_array(np.asarray([2], dtype=np.int64), "two")
    data = graph_bytes(nodes, [weight("W", (3, 2)), two], check=False)
    with pytest.raises(ModelFormatError, match="'cos' has a value of 2 elements"):
        load_onnx_model(data)


def test_expand_to_a_constant_shape_follows_the_batch_rule() -> None:
    nodes = [
        helper.make_node("Unsqueeze", ["x", "ax1"], ["u"], name="unsq"),
        helper.make_node("Expand", ["u", "target"], ["e"], name="expand"),
        helper.make_node("ReduceSum", ["e", "ax1"], ["s"], keepdims=0, name="sum"),
        helper.make_node("MatMul", ["s", "W"], ["y"], name="mm"),
    ]
    inits = [
        numpy_helper.from_array(np.asarray([1], dtype=np.int64), "ax1"),
        numpy_helper.from_array(np.asarray([2, 4, 3], dtype=np.int64), "target"),
        weight("W", (3, 2)),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])]
    model = load_onnx_model(graph_bytes(nodes, inits, inputs=inputs, outputs=outputs))
    X = torch.rand(5, 3, dtype=torch.float64)
    W = torch.tensor(numpy_helper.to_array(weight("W", (3, 2))), dtype=torch.float64)
    torch.testing.assert_close(model.module(X), 4.0 * X @ W)


def test_clip_with_min_above_max_sets_every_entry_to_max() -> None:
    lo = numpy_helper.from_array(np.asarray(0.7, dtype=np.float32), "lo")
    hi = numpy_helper.from_array(np.asarray(0.2, dtype=np.float32), "hi")
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("Clip", ["h", "lo", "hi"], ["y"], name="clip"),
    ]
    model = load_onnx_model(graph_bytes(nodes, [weight("W", (3, 2)), lo, hi]))
    X = torch.rand(4, 3, dtype=torch.float64)
    torch.testing.assert_close(model.module(X), torch.full((4, 2), 0.2, dtype=torch.float64))
