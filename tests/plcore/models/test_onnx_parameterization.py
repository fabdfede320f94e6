"""The ONNX importer keeps the graph's parameterization (CONTRACT.md "Parameterization").

Oracles: (a) torch.func.jacrev of the original torch module, exported with
do_constant_folding=False; (b) central finite differences of onnxruntime outputs w.r.t. each
initializer of float64 graphs. Neither looks at the module the importer built.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from plcore.errors import UnsupportedOperatorError
from plcore.kernel import tangent_kernel
from plcore.kernel.methods import structured_obstacle
from plcore.models.base import Model
from plcore.models.layers import Bias, Dense
from plcore.models.onnx_import import load_onnx_model
from plcore.models.params import parameter_table, select_parameters
from tests.plcore.models.torch_oracles import NTKMLP, TORCH_CASES, export, torch_kernel


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def trainable_sources(model: Model) -> list[str]:
    return [p.name for p in parameter_table(model) if p.trainable]


# ----- (a) torch modules against torch.func.jacrev of the module itself ---------------------
@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_torch_exported_kernel_equals_the_torch_modules_kernel(case: str) -> None:
    factory, shape = TORCH_CASES[case]
    module = factory().double().eval()
    model = load_onnx_model(export(module, shape))
    names = trainable_sources(model)
    own = dict(module.named_parameters())
    assert set(names) <= set(own), names
    # the default: every float parameter with >= 2 entries (no size-1 tensor in these modules)
    assert set(names) == {n for n, p in own.items() if p.numel() >= 2}
    X = torch.randn((5, *shape), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    K_torch = torch_kernel(module, X, names)
    for method in ("reference", "auto"):
        assert rel(tangent_kernel(model, X, method), K_torch) < 1e-8, method


def test_ntk_mlp_scales_are_carried_by_the_layers_not_folded_into_the_parameters() -> None:
    module = NTKMLP()
    model = load_onnx_model(export(module, (3,)))
    sources = model.metadata["parameter_sources"]
    values = {sources[n]: p.detach() for n, p in model.module.named_parameters()}
    torch.testing.assert_close(values["b"], module.b.detach(), rtol=0, atol=0)
    torch.testing.assert_close(values["W"], module.W.detach(), rtol=0, atol=0)
    biases = [m for m in model.module.modules() if isinstance(m, Bias)]
    assert [b.scale for b in biases] == [pytest.approx(0.1), pytest.approx(0.1)]
    assert structured_obstacle(model) is None


def test_single_output_bias_is_frozen_by_default_and_trainable_on_request() -> None:
    module = NTKMLP(k=1)
    model = load_onnx_model(export(module, (3,)))
    table = {p.name: p for p in parameter_table(model)}
    assert table["c"].count == 1 and not table["c"].trainable
    assert model.n_params == 16 * 3 + 16 + 16
    X = torch.randn(6, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert rel(tangent_kernel(model, X), torch_kernel(module, X, ["W", "b", "V"])) < 1e-8
    everything = select_parameters(model, trainable=["*"])
    assert everything.n_params == model.n_params + 1
    K_all = tangent_kernel(everything, X)
    assert rel(K_all, torch_kernel(module, X, ["W", "b", "V", "c"])) < 1e-8
    # the frozen bias changes K by 0.1^2 per entry: the two kernels are different
    assert rel(K_all, tangent_kernel(model, X)) > 1e-4


def test_exporter_constant_folding_is_reported_in_model_notes() -> None:
    module = NTKMLP().double().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(2, 3, dtype=torch.float64),),
            buf,  # type: ignore[arg-type]
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "n"}},
        )
    model = load_onnx_model(buf.getvalue())
    assert len(model.notes) == 1
    assert "look constant-folded by the exporter" in model.notes[0]
    assert "do_constant_folding=False" in model.notes[0]
    assert load_onnx_model(export(module, (3,))).notes == ()


def test_dynamo_exporter_without_optimization_keeps_the_parameterization() -> None:
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")

    # scales exactly representable in float32: the dynamo exporter writes scalars as float32
    class Net(NTKMLP):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = torch.tanh(torch.nn.functional.linear(x, self.W) * 0.5 + 0.125 * self.b)
            return torch.nn.functional.linear(z, self.V) * 0.25 + 0.125 * self.c

    module = Net().double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (torch.zeros(2, 3, dtype=torch.float64),),
            dynamo=True,
            optimize=False,
            verbose=False,
            input_names=["x"],
            dynamic_shapes={"x": {0: torch.export.Dim("n")}},
        )
    assert program is not None
    model = load_onnx_model(program.model_proto.SerializeToString())
    assert sorted(trainable_sources(model)) == ["V", "W", "b", "c"]
    X = torch.randn(5, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    K_torch = torch_kernel(module, X, ["W", "b", "V", "c"])
    assert rel(tangent_kernel(model, X), K_torch) < 1e-8


# ----- (b) float64 graphs against finite differences of onnxruntime --------------------------
def f64(name: str, shape: tuple[int, ...], seed: int, scale: float = 1.0) -> onnx.TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(scale * rng.standard_normal(shape), name)


def c64(name: str, value: float) -> onnx.NodeProto:
    t = numpy_helper.from_array(np.asarray(value, dtype=np.float64), name)
    return helper.make_node("Constant", [], [name], value=t, name=f"const_{name}")


def model_f64(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], d: int, k: int) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", d])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", k])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def fd_kernel(data: bytes, X: np.ndarray, names: list[str], h: float = 1e-5) -> np.ndarray:
    """K = sum_t J_t J_t^T, J_t by central differences of onnxruntime outputs w.r.t. t."""
    proto = onnx.load_from_string(data)
    inits = {t.name: numpy_helper.to_array(t).copy() for t in proto.graph.initializer}

    def run(values: dict[str, np.ndarray]) -> np.ndarray:
        p = onnx.load_from_string(data)
        for t in p.graph.initializer:
            t.CopyFrom(numpy_helper.from_array(values[t.name], t.name))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(p.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return np.asarray(sess.run(None, {"x": X})[0]).reshape(-1)

    N = run(inits).size
    K = np.zeros((N, N))
    for name in names:
        base = inits[name]
        cols = []
        for j in range(base.size):
            plus, minus = base.copy().reshape(-1), base.copy().reshape(-1)
            plus[j] += h
            minus[j] -= h
            up = run({**inits, name: plus.reshape(base.shape)})
            down = run({**inits, name: minus.reshape(base.shape)})
            cols.append((up - down) / (2 * h))
        J = np.stack(cols, axis=1)
        K += J @ J.T
    return K


def fd_case(name: str) -> tuple[bytes, list[str]]:
    """Float64 graphs where initializers meet arithmetic before data (the importer's hard cases)."""
    n = helper.make_node
    if name == "scaled_and_transposed":  # y = x (0.5 W)^T... + 0.1 b, W stored (2, 3)
        nodes = [
            c64("half", 0.5),
            c64("tenth", 0.1),
            n("Transpose", ["W"], ["Wt"], perm=[1, 0]),
            n("Mul", ["Wt", "half"], ["Ws"]),
            n("MatMul", ["x", "Ws"], ["h"]),
            n("Mul", ["tenth", "b"], ["bs"]),
            n("Add", ["h", "bs"], ["y"]),
        ]
        return model_f64(nodes, [f64("W", (2, 3), 1), f64("b", (2,), 2)], 3, 2), ["W", "b"]
    if name == "div_pow_exp":  # tanh(x W) / s, exp of a log-scale, Pow by an initializer
        nodes = [
            n("MatMul", ["x", "W"], ["h"]),
            n("Tanh", ["h"], ["t"]),
            n("Div", ["t", "s"], ["u"]),
            n("Exp", ["logg"], ["g"]),
            n("Mul", ["u", "g"], ["v"]),
            n("Mul", ["v", "v"], ["v2"]),
            n("Pow", ["v2", "p"], ["y"]),
        ]
        inits = [
            f64("W", (3, 2), 3),
            numpy_helper.from_array(np.asarray([1.5, 2.0]), "s"),
            f64("logg", (2,), 4, 0.3),
            numpy_helper.from_array(np.asarray([0.75, 1.25]), "p"),
        ]
        return model_f64(nodes, inits, 3, 2), ["W", "s", "logg", "p"]
    if name == "tied":  # y = tanh(x W) W, W (3, 3) used twice
        nodes = [
            n("MatMul", ["x", "W"], ["h"]),
            n("Tanh", ["h"], ["t"]),
            n("MatMul", ["t", "W"], ["y"]),
        ]
        return model_f64(nodes, [f64("W", (3, 3), 5)], 3, 3), ["W"]
    if name == "weight_and_general_use":  # y = tanh(x W) exp(0.5 W): one W, two layouts
        nodes = [
            c64("half", 0.5),
            n("MatMul", ["x", "W"], ["h"]),
            n("Tanh", ["h"], ["t"]),
            n("Mul", ["W", "half"], ["Wh"]),
            n("Exp", ["Wh"], ["E"]),
            n("MatMul", ["t", "E"], ["y"]),
        ]
        return model_f64(nodes, [f64("W", (3, 3), 15, 0.5)], 3, 3), ["W"]
    if name == "two_initializers_combined":  # y = x (A + 0.5 B), then Gemm with alpha, beta
        nodes = [
            c64("half", 0.5),
            n("Mul", ["B", "half"], ["Bh"]),
            n("Add", ["A", "Bh"], ["M"]),
            n("MatMul", ["x", "M"], ["h"]),
            n("Gemm", ["h", "V", "c"], ["y"], alpha=2.0, beta=0.5, transB=1),
        ]
        inits = [f64("A", (3, 4), 6), f64("B", (3, 4), 7), f64("V", (2, 4), 8), f64("c", (2,), 9)]
        return model_f64(nodes, inits, 3, 2), ["A", "B", "V", "c"]
    raise KeyError(name)


FD_CASES = [
    "scaled_and_transposed",
    "div_pow_exp",
    "tied",
    "weight_and_general_use",
    "two_initializers_combined",
]


@pytest.mark.parametrize("case", FD_CASES)
def test_kernel_matches_finite_differences_of_onnxruntime(case: str) -> None:
    data, names = fd_case(case)
    model = load_onnx_model(data)
    assert sorted(trainable_sources(model)) == sorted(names)
    rng = np.random.default_rng(10)
    X = rng.uniform(0.1, 1.0, (4, 3))
    K_fd = fd_kernel(data, X, names)
    K = tangent_kernel(model, torch.from_numpy(X)).numpy()
    # central differences: truncation h^2 f''' / 6 ~ 1e-10 and rounding eps / h ~ 1e-11
    np.testing.assert_allclose(K, K_fd, rtol=0, atol=1e-7 * np.abs(K_fd).max())


def test_layout_ops_on_a_weight_are_folded_and_leave_the_kernel_unchanged() -> None:
    data, _ = fd_case("scaled_and_transposed")
    model = load_onnx_model(data)
    dense = next(m for m in model.module.modules() if isinstance(m, Dense))
    W = numpy_helper.to_array(f64("W", (2, 3), 1))
    # the Transpose + MatMul fold back to the stored layout; the 0.5 is the layer's scale
    np.testing.assert_array_equal(dense.weight.detach().numpy(), W)
    assert dense.weight_scale == 0.5
    n = helper.make_node
    b = numpy_helper.to_array(f64("b", (2,), 2))
    stored_transposed = model_f64(  # the same model with W stored as W^T: no Transpose node
        [
            c64("half", 0.5),
            c64("tenth", 0.1),
            n("MatMul", ["x", "Wt"], ["h"]),
            n("Mul", ["h", "half"], ["hs"]),
            n("Mul", ["tenth", "b"], ["bs"]),
            n("Add", ["hs", "bs"], ["y"]),
        ],
        [numpy_helper.from_array(W.T.copy(), "Wt"), numpy_helper.from_array(b, "b")],
        3,
        2,
    )
    other = load_onnx_model(stored_transposed)
    X = torch.rand(4, 3, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    torch.testing.assert_close(model.module(X), other.module(X))
    assert rel(tangent_kernel(model, X), tangent_kernel(other, X)) < 1e-12


def test_tied_weight_is_one_shared_parameter_and_uses_the_reference_kernel() -> None:
    data, _ = fd_case("tied")
    model = load_onnx_model(data)
    assert model.n_params == 9
    assert [p.name for p in parameter_table(model)] == ["W"]
    assert structured_obstacle(model) is not None


def test_one_initializer_in_two_weight_layouts_is_refused() -> None:
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "W"], ["h"]),
        n("Gemm", ["h", "W"], ["y"], transB=1),
    ]
    with pytest.raises(
        UnsupportedOperatorError, match="'W' is used as a weight in two different layouts"
    ):
        load_onnx_model(model_f64(nodes, [f64("W", (3, 3), 12)], 3, 3))


def test_batchnorm_running_statistics_are_buffers_and_the_affine_part_is_trainable() -> None:
    factory, shape = TORCH_CASES["batchnorm_eval"]
    model = load_onnx_model(export(factory(), shape))
    names = {p.name for p in parameter_table(model)}
    assert {"bn.weight", "bn.bias"} <= names
    assert not any("running" in n for n in names)


def test_report_shape_is_the_initializers_even_when_the_layout_is_folded() -> None:
    data, _ = fd_case("scaled_and_transposed")  # W (2, 3) reaches MatMul through a Transpose
    table = {p.name: p for p in parameter_table(load_onnx_model(data))}
    assert table["W"].shape == (2, 3) and table["W"].count == 6


def test_constant_node_weight_is_frozen_by_default_and_named_in_the_notes() -> None:
    W = numpy_helper.to_array(f64("W", (3, 2), 13))
    nodes = [
        helper.make_node("Constant", [], ["Wc"], value=numpy_helper.from_array(W, "Wc")),
        helper.make_node("MatMul", ["x", "Wc"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["y"]),
    ]
    model = load_onnx_model(model_f64(nodes, [f64("b", (2,), 14)], 3, 2))
    assert [(p.name, p.trainable) for p in parameter_table(model)] == [("Wc", False), ("b", True)]
    assert "'Wc' are Constant nodes, not initializers" in model.notes[0]
    assert select_parameters(model, trainable=["Wc", "b"]).n_params == 8
