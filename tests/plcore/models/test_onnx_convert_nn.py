"""The decomposed LayerNorm of exports before opset 17 becomes one normalisation step, and the
decomposed exact GELU of exports before opset 20 one GELU activation.

Checked against the torch source module (outputs and the tangent kernel from torch.func), and
against hand-built graphs whose near-miss patterns must stay decomposed and still compute the
graph's own function (a reference written here in torch). The GELU constant's rounding is
checked in 50-digit arithmetic.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn

from plcore.estimate.analytic import beta_upper_bound, bound_refusal
from plcore.estimate.rounding import evaluation_bound_refusal, evaluation_error_bound
from plcore.kernel import tangent_kernel
from plcore.models import onnx_ops as ops
from plcore.models.base import Model
from plcore.models.layers import Activation
from plcore.models.onnx_import import load_onnx_model
from tests.plcore.models.torch_oracles import export, torch_kernel


class _VectorLN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.norm, self.fc2 = nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.tanh(self.norm(self.fc1(x))))


class _ImageLN(nn.Module):
    """LayerNorm over (C, H, W), then over the last axis (rows) only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.whole, self.rows = nn.LayerNorm([2, 3, 3]), nn.LayerNorm(3, eps=1e-3)
        self.fc = nn.Linear(18, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.rows(torch.tanh(self.whole(self.conv(x)))))
        return self.fc(h.flatten(1))


def _randomized(module: nn.Module) -> nn.Module:
    torch.manual_seed(12)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return module.double().eval()


def _steps(model: Model) -> list[str]:
    return [type(s).__name__ for s in model.module.steps.values()]


CASES = {"vector": (_VectorLN, (4,)), "image": (_ImageLN, (1, 5, 5))}


@pytest.mark.parametrize("opset", [13, 15])
@pytest.mark.parametrize("name", sorted(CASES))
def test_decomposed_layernorm_is_one_step_with_the_source_modules_function_and_kernel(
    name: str, opset: int
) -> None:
    cls, shape = CASES[name]
    src = _randomized(cls())
    model = load_onnx_model(export(src, shape, opset=opset))
    steps = _steps(model)
    n_norms = sum(isinstance(m, nn.LayerNorm) for m in src.modules())
    assert steps.count("LayerNormPlain") == n_norms, steps
    assert not {"Reduce", "Unary"} & set(steps), steps  # no ReduceMean, Sqrt left
    _matches_source_and_is_bounded(model, src, shape, seed=1)


def _matches_source_and_is_bounded(
    model: Model, src: nn.Module, shape: tuple[int, ...], seed: int
) -> None:
    """Outputs (1e-14) and the tangent kernel (torch.func on ``src``, 1e-12) of the imported
    model, and both proven bounds apply to it."""
    X = torch.randn(3, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model.module(X).reshape(3, -1), src(X), rtol=0, atol=1e-14)
    names = list(model.metadata["parameter_sources"].values())
    K = tangent_kernel(model, X)
    torch.testing.assert_close(K, torch_kernel(src, X, names), rtol=1e-12, atol=1e-13)
    assert evaluation_bound_refusal(model) is None
    assert bound_refusal(model) is None


@pytest.mark.parametrize("name", sorted(CASES))
def test_decomposed_and_layernormalization_exports_get_the_same_bounds(name: str) -> None:
    """Opset 13 (decomposed, eps a float64 Constant) against opset 17 (the node; eps a float32
    attribute, 1e-5 -> 9.99999975e-06): the same proven beta and ||J|| on the ball, and
    running-error bounds of the same size."""
    cls, shape = CASES[name]
    src = _randomized(cls())
    old = load_onnx_model(export(src, shape, opset=13))
    new = load_onnx_model(export(src, shape, opset=17))
    X = torch.randn(3, *shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for rho in (0.0, 0.3):
        a, b = beta_upper_bound(old, X, rho), beta_upper_bound(new, X, rho)
        assert a is not None and b is not None
        assert math.isclose(a.beta_upper, b.beta_upper, rel_tol=1e-5)
        assert math.isclose(a.jacobian_upper, b.jacobian_upper, rel_tol=1e-5)
    ea, eb = evaluation_error_bound(old, X), evaluation_error_bound(new, X)
    assert ea is not None and eb is not None
    assert 0.5 < ea.jacobian_fro / eb.jacobian_fro < 2.0


# ----- hand-built graphs: what is fused and what is not -------------------------------------


def _graph(
    *,
    exponent: float = 2.0,
    eps_initializer: bool = False,
    third_use: bool = False,
    opset: int = 13,
) -> bytes:
    """x (n, 5) -> LayerNorm written out in ops -> MatMul W (5 x 2)."""
    rng = np.random.default_rng(0)
    n = helper.make_node
    const = TensorProto.DOUBLE

    def scalar(name: str, v: float) -> onnx.NodeProto:
        t = helper.make_tensor(name + "_t", const, (), [v])
        return n("Constant", [], [name], value=t)

    axes_in: list[str] = []
    axes_attr: dict[str, list[int]] = {"axes": [-1]}
    inits = [numpy_helper.from_array(rng.standard_normal((5, 2)), "W")]
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes"))
        axes_in, axes_attr = ["axes"], {}
    nodes = [
        n("ReduceMean", ["x", *axes_in], ["m"], **axes_attr),
        n("Sub", ["x", "m"], ["d"]),
        scalar("two", exponent),
        n("Pow", ["d", "two"], ["d2"]),
        n("ReduceMean", ["d2", *axes_in], ["v"], **axes_attr),
    ]
    if eps_initializer:
        inits.append(numpy_helper.from_array(np.array(1e-5), "eps"))
    else:
        nodes.append(scalar("eps", 1e-5))
    nodes += [
        n("Add", ["v", "eps"], ["ve"]),
        n("Sqrt", ["ve"], ["s"]),
        n("Div", ["d", "s"], ["y0"]),
    ]
    last = "y0"
    if third_use:
        nodes.append(n("Add", ["y0", "d"], ["y1"]))
        last = "y1"
    nodes.append(n("MatMul", [last, "W"], ["y"]))
    g = helper.make_graph(
        nodes,
        "ln",
        [helper.make_tensor_value_info("x", const, ("n", 5))],
        [helper.make_tensor_value_info("y", const, ("n", 2))],
        inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _reference(x: Tensor, W: Tensor, exponent: float, third_use: bool) -> Tensor:
    d = x - x.mean(-1, keepdim=True)
    y = d / torch.sqrt((d**exponent).mean(-1, keepdim=True) + 1e-5)
    return (y + d if third_use else y) @ W


@pytest.mark.parametrize(
    ("kwargs", "fused"),
    [
        ({}, True),
        ({"opset": 18}, True),
        ({"exponent": 4.0}, False),
        ({"eps_initializer": True}, False),
        ({"third_use": True}, False),
    ],
    ids=[
        "pattern",
        "pattern-opset18-axes-input",
        "pow-4",
        "eps-initializer",
        "centred-used-thrice",
    ],
)
def test_only_the_exact_pattern_is_fused_and_every_graph_keeps_its_function(
    kwargs: dict[str, object], fused: bool
) -> None:
    data = _graph(**kwargs)  # type: ignore[arg-type]
    model = load_onnx_model(data)
    assert ("LayerNormPlain" in _steps(model)) is fused
    if fused:
        (norm,) = (m for m in model.module.modules() if isinstance(m, ops.LayerNormPlain))
        assert norm.eps == 1e-5 and norm.axis == -1
    X = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (w,) = (t for t in onnx.load_from_string(data).graph.initializer if t.name == "W")
    W = torch.from_numpy(numpy_helper.to_array(w))
    exponent = float(kwargs.get("exponent", 2.0))  # type: ignore[arg-type]
    want = _reference(X, W, exponent, bool(kwargs.get("third_use", False)))
    with torch.no_grad():
        torch.testing.assert_close(model.module(X).reshape(4, 2), want, rtol=0, atol=1e-13)


# ----- the decomposed exact GELU ------------------------------------------------------------


class _GeluMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class _GeluCNN(nn.Module):
    """GELU on an image and inside a residual block (x read by the GELU pattern twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.fc = nn.Linear(50, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = nn.functional.gelu(self.c1(x))
        return self.fc((h + nn.functional.gelu(self.c2(h))).flatten(1))


GELU_CASES = {"vector": (_GeluMLP, (4,)), "image": (_GeluCNN, (1, 5, 5))}


def _activations(model: Model) -> list[str]:
    return [m.name for m in model.module.steps.values() if isinstance(m, Activation)]


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", sorted(GELU_CASES))
def test_decomposed_gelu_is_one_activation_with_the_source_modules_function_and_kernel(
    name: str, opset: int
) -> None:
    cls, shape = GELU_CASES[name]
    torch.manual_seed(13)
    src = cls().double().eval()
    data = export(src, shape, opset=opset)
    assert "Erf" in [n.op_type for n in onnx.load_from_string(data).graph.node]
    model = load_onnx_model(data)
    assert _activations(model) == ["gelu", "gelu"][: 1 if name == "vector" else 2]
    assert _steps(model).count("Binary") == (0 if name == "vector" else 1)  # the residual Add
    _matches_source_and_is_bounded(model, src, shape, seed=4)


def test_gelu_constant_rounding_moves_the_function_by_less_than_a_third_of_u() -> None:
    """The exported constant is sqrt(2) rounded to float64: max_x 0.5 |x| |erf(x / c) -
    erf(x / sqrt(2))| < 0.3 * 2^-53, on a grid around the maximiser x = +-2 (50 digits); the same
    for the factor 1 / sqrt(2)."""
    mpmath.mp.dps = 50
    u = mpmath.mpf(2) ** -53
    root2 = mpmath.sqrt(2)
    for c in (mpmath.mpf(math.sqrt(2.0)), 1 / mpmath.mpf(math.sqrt(0.5))):
        assert abs(c / root2 - 1) <= u
        worst = max(
            abs(x / 2 * (mpmath.erf(x / c) - mpmath.erf(x / root2)))
            for x in (mpmath.mpf(k) / 100 for k in range(-600, 601))
        )
        assert worst < mpmath.mpf("0.3") * u
        assert worst > mpmath.mpf("0.1") * abs(c / root2 - 1)  # the grid sees the effect


def _gelu_graph(
    *, first: str = "Div", c: float = math.sqrt(2.0), half_first: bool = False
) -> bytes:
    """x (n, 3) -> GELU written out in ops -> MatMul W (3 x 2): Div by c (or Mul by c), Erf,
    Add 1, then x * (1 + erf) * 0.5 or x * ((1 + erf) * 0.5)."""
    n = helper.make_node
    dbl = TensorProto.DOUBLE

    def scalar(name: str, v: float) -> onnx.NodeProto:
        return n("Constant", [], [name], value=helper.make_tensor(name + "_t", dbl, (), [v]))

    nodes = [
        scalar("c", c),
        n(first, ["x", "c"], ["d"]),
        n("Erf", ["d"], ["e"]),
        scalar("one", 1.0),
        n("Add", ["e", "one"], ["a"]),
        scalar("half", 0.5),
    ]
    if half_first:
        nodes += [n("Mul", ["a", "half"], ["h"]), n("Mul", ["x", "h"], ["g"])]
    else:
        nodes += [n("Mul", ["x", "a"], ["m"]), n("Mul", ["m", "half"], ["g"])]
    nodes.append(n("MatMul", ["g", "W"], ["y"]))
    W = numpy_helper.from_array(np.random.default_rng(1).standard_normal((3, 2)), "W")
    g = helper.make_graph(
        nodes,
        "gelu",
        [helper.make_tensor_value_info("x", dbl, ("n", 3))],
        [helper.make_tensor_value_info("y", dbl, ("n", 2))],
        [W],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("kwargs", "fused"),
    [
        ({}, True),
        ({"half_first": True}, True),
        ({"first": "Mul", "c": math.sqrt(0.5)}, True),
        ({"c": float(np.float32(math.sqrt(2.0)))}, False),
        ({"c": 1.5}, False),
        ({"first": "Mul", "c": math.sqrt(2.0)}, False),
    ],
    ids=["div", "half-first", "mul-inverse", "float32-constant", "other-constant", "mul-sqrt2"],
)
def test_only_the_exact_gelu_is_fused_and_every_graph_keeps_its_function(
    kwargs: dict[str, object], fused: bool
) -> None:
    data = _gelu_graph(**kwargs)  # type: ignore[arg-type]
    model = load_onnx_model(data)
    assert (_activations(model) == ["gelu"]) is fused
    X = torch.randn(5, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 3
    (w,) = onnx.load_from_string(data).graph.initializer
    W = torch.from_numpy(numpy_helper.to_array(w))
    c = float(kwargs.get("c", math.sqrt(2.0)))  # type: ignore[arg-type]
    arg = X * c if kwargs.get("first") == "Mul" else X / c
    want = (X * (1 + torch.erf(arg)) * 0.5) @ W
    with torch.no_grad():
        torch.testing.assert_close(model.module(X).reshape(5, 2), want, rtol=0, atol=1e-13)
