"""A zoo of small ONNX models built in memory at test time (torch.onnx.export and onnx.helper).

Every model is small (tens to a few thousand parameters) so that dense Jacobians stay cheap; the
kernel tests use the zoo to check every kernel method against a dense Jacobian.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn


@dataclass(frozen=True)
class ZooModel:
    """One test model: its bytes, per-sample input shape, a good batch size and, when the graph
    has a fixed batch axis, that size (onnxruntime then runs in chunks of it)."""

    name: str
    onnx_bytes: bytes
    input_shape: tuple[int, ...]
    n_samples_hint: int
    fixed_batch: int | None = None


def _export(
    module: nn.Module, input_shape: tuple[int, ...], opset: int, *, dynamic: bool = True
) -> bytes:
    module = module.float().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros((1, *input_shape), dtype=torch.float32),),
            buf,  # type: ignore[arg-type]  # a file-like object is accepted at run time
            dynamo=False,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}} if dynamic else None,
        )
    return buf.getvalue()


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


class _ResBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2)
        self.head = nn.Linear(2, 3)
        for bn in (self.bn1, self.bn2):
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(bn.weight, 0.5, 1.5)
            nn.init.uniform_(bn.bias, -0.2, 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)) + x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))


class _CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(27, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.tanh(self.conv(x)))
        return self.fc(h.reshape(x.shape[0], -1))


class _TokenMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Linear(4, 5)
        self.out = nn.Linear(15, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.tok(x)).flatten(1))


def _torch_models() -> list[ZooModel]:
    zoo: list[ZooModel] = []
    _seeded(0)
    mlp = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    zoo.append(ZooModel("torch_mlp_tanh_op13", _export(mlp, (4,), 13), (4,), 6))
    _seeded(1)
    mlp = nn.Sequential(nn.Linear(3, 12), nn.GELU(), nn.Linear(12, 12), nn.GELU(), nn.Linear(12, 1))
    zoo.append(ZooModel("torch_mlp_gelu_op20", _export(mlp, (3,), 20), (3,), 6))
    _seeded(2)
    mlp = nn.Sequential(nn.Linear(3, 10), nn.Softplus(), nn.Linear(10, 2))
    zoo.append(ZooModel("torch_mlp_softplus_op18", _export(mlp, (3,), 18), (3,), 6))
    _seeded(3)
    mlp = nn.Sequential(nn.Linear(3, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.SiLU(), nn.Linear(8, 2))
    zoo.append(ZooModel("torch_mlp_sigmoid_silu_op21", _export(mlp, (3,), 21), (3,), 6))
    _seeded(4)
    ln = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 2))
    zoo.append(ZooModel("torch_layernorm_op17", _export(ln, (4,), 17), (4,), 6))
    zoo.append(ZooModel("torch_layernorm_decomposed_op13", _export(ln, (4,), 13), (4,), 6))
    _seeded(5)
    cnn = _CNN()
    zoo.append(
        ZooModel(
            "torch_cnn_batch1_op17", _export(cnn, (1, 6, 6), 17, dynamic=False), (1, 6, 6), 4, 1
        )
    )
    _seeded(6)
    zoo.append(ZooModel("torch_resblock_op17", _export(_ResBlock(), (2, 4, 4), 17), (2, 4, 4), 4))
    _seeded(7)
    zoo.append(ZooModel("torch_token_mlp_op17", _export(_TokenMLP(), (3, 4), 17), (3, 4), 5))
    _seeded(8)
    mlp = nn.Sequential(nn.Linear(3, 10), nn.GELU(approximate="tanh"), nn.Linear(10, 2))
    zoo.append(ZooModel("torch_mlp_gelu_tanh_op20", _export(mlp, (3,), 20), (3,), 6))
    _seeded(9)
    mlp = nn.Sequential(nn.Linear(3, 8), nn.Hardtanh(-0.5, 0.5), nn.Linear(8, 8), nn.ReLU6())
    zoo.append(ZooModel("torch_mlp_hardtanh_relu6_op13", _export(mlp, (3,), 13), (3,), 6))
    return zoo


# ----- onnx.helper graphs ---------------------------------------------------------------------
def _init(
    name: str, shape: tuple[int, ...], rng: np.random.Generator, scale: float = 0.5
) -> onnx.TensorProto:
    return numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), name)


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _scalar(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _bools(name: str, values: list[bool]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.bool_), name)


def _model(
    name: str,
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    in_shape: tuple[int | str, ...],
    out_shape: tuple[int | str, ...],
    opset: int,
) -> bytes:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 18 else 10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _helper_models() -> list[ZooModel]:
    rng = np.random.default_rng(0)
    zoo: list[ZooModel] = []
    n = helper.make_node

    nodes = [
        n("MatMul", ["x", "W1"], ["h1"], name="mm1"),
        n("Add", ["h1", "b1"], ["h2"], name="add1"),
        n("Tanh", ["h2"], ["h3"], name="tanh"),
        n("MatMul", ["h3", "W2"], ["h4"], name="mm2"),
        n("Add", ["b2", "h4"], ["y"], name="add2"),
    ]
    inits = [
        _init("W1", (5, 7), rng),
        _init("b1", (7,), rng),
        _init("W2", (7, 2), rng),
        _init("b2", (2,), rng),
    ]
    zoo.append(
        ZooModel("helper_matmul_add", _model("mm", nodes, inits, ("n", 5), ("n", 2), 13), (5,), 6)
    )

    nodes = [
        n("Transpose", ["x"], ["xt"], perm=[1, 0], name="t"),
        n("Gemm", ["xt", "W1", "c1"], ["h"], transA=1, transB=1, alpha=0.7, beta=1.3, name="g1"),
        n("Sigmoid", ["h"], ["s"], name="sig"),
        n("Gemm", ["s", "W2", "c2"], ["y"], alpha=1.1, beta=0.5, name="g2"),
    ]
    inits = [
        _init("W1", (6, 5), rng),
        _init("c1", (6,), rng),
        _init("W2", (6, 2), rng),
        _init("c2", (1, 2), rng),
    ]
    zoo.append(
        ZooModel("helper_gemm_trans", _model("gemm", nodes, inits, ("n", 5), ("n", 2), 13), (5,), 6)
    )

    nodes = [
        n(
            "Conv",
            ["x", "Wc1", "bc1"],
            ["c1"],
            pads=[1, 0, 2, 1],
            strides=[2, 1],
            group=2,
            name="conv1",
        ),
        n("Tanh", ["c1"], ["a1"], name="tanh1"),
        n("Conv", ["a1", "Wc2"], ["c2"], auto_pad="SAME_UPPER", strides=[2, 2], name="conv2"),
        n(
            "AveragePool",
            ["c2"],
            ["p"],
            kernel_shape=[2, 2],
            pads=[0, 0, 1, 1],
            count_include_pad=0,
            name="avg",
        ),
        n("MaxPool", ["p"], ["m"], kernel_shape=[2, 2], strides=[1, 1], name="max"),
        n("Flatten", ["m"], ["f"], name="flat"),
        n("Gemm", ["f", "Wd", "bd"], ["y"], transB=1, name="fc"),
    ]
    inits = [
        _init("Wc1", (4, 2, 3, 3), rng),
        _init("bc1", (4,), rng),
        _init("Wc2", (2, 4, 3, 3), rng),
        _init("Wd", (3, 4), rng),
        _init("bd", (3,), rng),
    ]
    zoo.append(
        ZooModel(
            "helper_conv_pads_group",
            _model("conv", nodes, inits, ("n", 4, 7, 7), ("n", 3), 17),
            (4, 7, 7),
            4,
        )
    )

    nodes = [
        n("Conv", ["x", "Wc"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        n(
            "BatchNormalization",
            ["c", "gamma", "beta", "mean", "var"],
            ["bn"],
            epsilon=1e-3,
            name="bn",
        ),
        n("Relu", ["bn"], ["r"], name="relu"),
        n("GlobalAveragePool", ["r"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flat"),
        n("Gemm", ["f", "Wd", "bd"], ["y"], transB=1, name="fc"),
    ]
    inits = [
        _init("Wc", (3, 2, 3, 3), rng),
        _init("gamma", (3,), rng, 0.3),
        _init("beta", (3,), rng),
        _init("mean", (3,), rng, 0.1),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 3).astype(np.float32), "var"),
        _init("Wd", (2, 3), rng),
        _init("bd", (2,), rng),
    ]
    zoo.append(
        ZooModel(
            "helper_batchnorm",
            _model("bn", nodes, inits, ("n", 2, 5, 5), ("n", 2), 15),
            (2, 5, 5),
            4,
        )
    )

    nodes = [
        n("LayerNormalization", ["x", "g", "b"], ["ln"], axis=-1, epsilon=1e-5, name="ln"),
        n("MatMul", ["ln", "W"], ["y"], name="mm"),
    ]
    inits = [_init("g", (6,), rng), _init("b", (6,), rng), _init("W", (6, 3), rng)]
    zoo.append(
        ZooModel(
            "helper_layernorm_op17", _model("ln", nodes, inits, ("n", 6), ("n", 3), 17), (6,), 6
        )
    )

    nodes = [
        n("Gemm", ["x", "W1", "b1"], ["h"], name="g1"),
        n(
            "Constant",
            [],
            ["sqrt2"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [], [1.4142135]),
            name="c",
        ),
        n("Div", ["h", "sqrt2"], ["d"], name="div"),
        n("Erf", ["d"], ["e"], name="erf"),
        n("Add", ["e", "one"], ["e1"], name="add"),
        n("Mul", ["h", "e1"], ["m"], name="mul"),
        n("Mul", ["m", "half"], ["gelu"], name="mul2"),
        n("Gemm", ["gelu", "W2"], ["y"], name="g2"),
    ]
    inits = [
        _init("W1", (4, 8), rng),
        _init("b1", (8,), rng),
        _scalar("one", 1.0),
        _scalar("half", 0.5),
        _init("W2", (8, 2), rng),
    ]
    zoo.append(
        ZooModel("helper_erf_gelu", _model("gelu", nodes, inits, ("n", 4), ("n", 2), 13), (4,), 6)
    )

    for opset in (19, 21):
        nodes = [
            n("Reshape", ["x", "s1"], ["r1"], allowzero=0, name="r1"),
            n("MatMul", ["r1", "W1"], ["h"], name="mm1"),
            n("Reshape", ["h", "s2"], ["r2"], allowzero=1, name="r2"),
            n("Tanh", ["r2"], ["t"], name="tanh"),
            n("MatMul", ["t", "W2"], ["y"], name="mm2"),
        ]
        inits = [
            _ints("s1", [0, 4, 6]),
            _init("W1", (6, 3), rng),
            _ints("s2", [-1, 12]),
            _init("W2", (12, 2), rng),
        ]
        zoo.append(
            ZooModel(
                f"helper_reshape_op{opset}",
                _model("rs", nodes, inits, ("n", 24), ("n", 2), opset),
                (24,),
                5,
            )
        )

    nodes = [
        n("Shape", ["x"], ["shp"], name="shape"),
        n("Gather", ["shp", "zero"], ["nb"], axis=0, name="gather"),
        n("Unsqueeze", ["nb", "ax0"], ["nb1"], name="unsq"),
        n("Concat", ["nb1", "minus1"], ["target"], axis=0, name="concat"),
        n("Reshape", ["x", "target"], ["f"], name="reshape"),
        n("Gemm", ["f", "W", "b"], ["y"], name="fc"),
    ]
    inits = [
        numpy_helper.from_array(np.asarray(0, dtype=np.int64), "zero"),
        _ints("ax0", [0]),
        _ints("minus1", [-1]),
        _init("W", (18, 3), rng),
        _init("b", (3,), rng),
    ]
    zoo.append(
        ZooModel(
            "helper_dynamic_flatten",
            _model("flat", nodes, inits, ("n", 2, 3, 3), ("n", 3), 13),
            (2, 3, 3),
            5,
        )
    )

    nodes = [
        n("Gemm", ["x", "W1", "b1"], ["h"], name="g1"),
        n("Tanh", ["h"], ["t"], name="tanh"),
        n("Gemm", ["t", "W2", "b2"], ["z"], name="g2"),
        n("Softmax", ["z"], ["y"], axis=-1, name="softmax"),
    ]
    inits = [
        _init("W1", (4, 6), rng),
        _init("b1", (6,), rng),
        _init("W2", (6, 3), rng),
        _init("b2", (3,), rng),
    ]
    zoo.append(
        ZooModel("helper_softmax_out", _model("sm", nodes, inits, ("n", 4), ("n", 3), 13), (4,), 6)
    )

    nodes = [
        n("Unsqueeze", ["x", "ax1"], ["u"], name="unsq"),
        n("Transpose", ["u"], ["t"], perm=[0, 2, 1], name="tr"),
        n("Squeeze", ["t", "ax2"], ["s"], name="sq"),
        n("Slice", ["s", "st", "en", "ax1"], ["sl"], name="slice"),
        n("Slice", ["sl", "st2", "en2", "ax1", "step2"], ["rev"], name="reverse"),
        n("MatMul", ["rev", "W"], ["y"], name="mm"),
    ]
    inits = [
        _ints("ax1", [1]),
        _ints("ax2", [2]),
        _ints("st", [1]),
        _ints("en", [6]),
        _ints("st2", [-1]),
        _ints("en2", [-(2**62)]),
        _ints("step2", [-1]),
        _init("W", (5, 2), rng),
    ]
    zoo.append(
        ZooModel(
            "helper_squeeze_slice_transpose",
            _model("sq", nodes, inits, ("n", 7), ("n", 2), 13),
            (7,),
            6,
        )
    )

    nodes = [
        n("Gemm", ["x", "W1"], ["h"], name="g1"),
        n("Sub", ["h", "c"], ["h1"], name="sub"),
        n("Neg", ["h1"], ["h2"], name="neg"),
        n("Exp", ["h2"], ["h3"], name="exp"),
        n("Add", ["h3", "one"], ["h4"], name="add1"),
        n("Log", ["h4"], ["h5"], name="log"),
        n("Pow", ["h5", "two"], ["h6"], name="pow"),
        n("Add", ["h6", "one"], ["h7"], name="add2"),
        n("Sqrt", ["h7"], ["h8"], name="sqrt"),
        n("Sin", ["h8"], ["h9"], name="sin"),
        n("Mul", ["h9", "g"], ["h10"], name="mul"),
        n("Sub", ["d", "h10"], ["h11"], name="rsub"),
        n("Div", ["h11", "two"], ["h12"], name="div"),
        n("Gemm", ["h12", "W2"], ["y"], name="g2"),
    ]
    inits = [
        _init("W1", (3, 5), rng),
        _init("c", (5,), rng),
        _scalar("one", 1.0),
        _scalar("two", 2.0),
        _init("g", (5,), rng),
        _init("d", (1, 5), rng),
        _init("W2", (5, 2), rng),
    ]
    zoo.append(
        ZooModel(
            "helper_elementwise_chain", _model("ew", nodes, inits, ("n", 3), ("n", 2), 13), (3,), 6
        )
    )
    return zoo + _helper_models_2(rng)


def _helper_models_2(rng: np.random.Generator) -> list[ZooModel]:
    """Clip with bounds as inputs, Min / Max, Where, Expand, ConstantOfShape, GlobalMaxPool."""
    zoo: list[ZooModel] = []
    n = helper.make_node

    nodes = [
        n("Gemm", ["x", "W1", "b1"], ["h"], name="g1"),
        n("Gemm", ["x", "W2"], ["g"], name="g2"),
        n("Clip", ["h", "lo", "hi"], ["c"], name="clip"),
        n("Clip", ["g", "", "hi2"], ["u"], name="clip_max_only"),
        n("Max", ["c", "u", "floor"], ["m"], name="max3"),
        n("Min", ["c", "u"], ["k"], name="min2"),
        n("Add", ["m", "k"], ["s"], name="add"),
        n("Gemm", ["s", "W3"], ["y"], name="g3"),
    ]
    inits = [
        _init("W1", (4, 6), rng),
        _init("b1", (6,), rng),
        _init("W2", (4, 6), rng),
        _scalar("lo", -0.4),
        _scalar("hi", 0.5),
        _scalar("hi2", 0.3),
        _init("floor", (6,), rng, 0.2),
        _init("W3", (6, 2), rng),
    ]
    zoo.append(
        ZooModel(
            "helper_clip_min_max_op13", _model("cl", nodes, inits, ("n", 4), ("n", 2), 13), (4,), 6
        )
    )

    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [0.25])
    nodes = [
        n("Gemm", ["x", "W1", "b1"], ["h"], name="g1"),
        n("Tanh", ["h"], ["t"], name="tanh"),
        n("Where", ["mask", "t", "h"], ["w"], name="where"),
        n("Shape", ["h"], ["shp"], name="shape"),
        n("ConstantOfShape", ["shp"], ["quarter"], value=value, name="cos_runtime"),
        n("ConstantOfShape", ["four"], ["zeros"], name="cos_folded"),
        n("Where", ["mask2", "w", "quarter"], ["w2"], name="where2"),
        n("Add", ["w2", "zeros"], ["w3"], name="add_zeros"),
        n("Expand", ["row", "shp"], ["rows"], name="expand_runtime"),
        n("Add", ["w3", "rows"], ["w4"], name="add_rows"),
        n("Unsqueeze", ["w4", "ax1"], ["u"], name="unsq"),
        n("Expand", ["u", "target"], ["e"], name="expand_const"),
        n("Mul", ["e", "S"], ["sc"], name="scale"),
        n("Flatten", ["sc"], ["f"], axis=1, name="flat"),
        n("Gemm", ["f", "W2"], ["y"], name="g2"),
    ]
    inits = [
        _init("W1", (3, 4), rng),
        _init("b1", (4,), rng),
        _bools("mask", [True, False, True, True]),
        _bools("mask2", [True, True, False, True]),
        _ints("four", [4]),
        _init("row", (1, 4), rng),
        _ints("ax1", [1]),
        _ints("target", [1, 3, 1]),
        _init("S", (3, 4), rng),
        _init("W2", (12, 2), rng),
    ]
    zoo.append(
        ZooModel(
            "helper_where_expand_constantofshape_op17",
            _model("wh", nodes, inits, ("n", 3), ("n", 2), 17),
            (3,),
            6,
        )
    )

    nodes = [
        n("Conv", ["x", "Wc", "bc"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        n("Sigmoid", ["c"], ["s"], name="sig"),
        n("GlobalMaxPool", ["s"], ["g"], name="gmp"),
        n("Flatten", ["g"], ["f"], name="flat"),
        n("Gemm", ["f", "Wd", "bd"], ["y"], transB=1, name="fc"),
    ]
    inits = [
        _init("Wc", (3, 2, 3, 3), rng),
        _init("bc", (3,), rng),
        _init("Wd", (2, 3), rng),
        _init("bd", (2,), rng),
    ]
    zoo.append(
        ZooModel(
            "helper_global_maxpool_op13",
            _model("gmp", nodes, inits, ("n", 2, 4, 4), ("n", 2), 13),
            (2, 4, 4),
            4,
        )
    )
    return zoo


@functools.lru_cache(maxsize=1)
def zoo() -> list[ZooModel]:
    """All zoo models, built once per process."""
    return _torch_models() + _helper_models()
