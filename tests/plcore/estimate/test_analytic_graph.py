"""The proven beta_F / L_F bounds on layer graphs (plcore.estimate.analytic, issue 9).

Soundness: for small nets of every supported kind, the bound is at least the brute-force
Hessian tensor norm (dense torch.func.hessian of w -> F(w), maximised over the unit sphere) and the
Jacobian norm (torch.func.jacrev, matrix 2-norm) at random points of the ball B(w0, rho) and at
points found by projected gradient ascent inside it. Both routes: JSON specs and ONNX exports of
torch modules; for every layer kind the two routes give the same bound (up to the rounding
margins: relative 1e-6). Refusals name the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

from plcore import load_model
from plcore.estimate.analytic import beta_upper_bound, bound_refusal
from plcore.hessian.dense import brute_force_tensor_norm, dense_output_hessians
from plcore.kernel import jacobian
from plcore.models.base import Model
from tests.plcore.models.torch_oracles import BatchNormMLP, export

RHO = 0.4

# JSON specs of every layer kind (small enough for dense Hessians)
SPECS: dict[str, dict[str, object]] = {
    "deep_mlp_ntk": {
        "type": "mlp",
        "input_dim": 3,
        "widths": [6, 5, 4],
        "output_dim": 2,
        "activation": "tanh",
        "parameterization": "ntk",
        "weight_std": 1.3,
        "bias_std": 0.2,
        "seed": 1,
    },
    "deep_mlp_standard_out_act": {
        "type": "mlp",
        "input_dim": 3,
        "widths": [5, 5],
        "output_dim": 1,
        "activation": "softplus",
        "output_activation": "tanh",
        "parameterization": "standard",
        "seed": 2,
    },
    "gelu_mlp": {
        "type": "mlp",
        "input_dim": 3,
        "widths": [5, 4],
        "output_dim": 2,
        "activation": "gelu",
        "parameterization": "standard",
        "seed": 5,
    },
    "cnn_stride_pool": {
        "type": "layers",
        "input_shape": [1, 6, 6],
        "output_dim": 2,
        "seed": 3,
        "layers": [
            {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1, "stride": 2},
            {"type": "activation", "name": "tanh"},
            {"type": "conv2d", "out_channels": 2, "kernel_size": 2, "padding": 1},
            {"type": "activation", "name": "sigmoid"},
            {"type": "avgpool2d", "kernel_size": 2},
            {"type": "flatten"},
            {"type": "linear", "out": 2},
        ],
    },
    "residual_layernorm_global_pool": {
        "type": "layers",
        "input_shape": [2, 4, 4],
        "output_dim": 2,
        "seed": 4,
        "layers": [
            {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
            {"type": "activation", "name": "erf"},
            {
                "type": "residual",
                "layers": [
                    {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
                    {"type": "layernorm"},
                    {"type": "activation", "name": "sin"},
                ],
            },
            {"type": "global_avgpool"},
            {"type": "linear", "out": 2},
        ],
    },
}


def _inputs(model: Model, n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *model.input_shape, generator=g, dtype=torch.float64)


def _hessian_norm(model: Model, X: Tensor, w: Tensor) -> float:
    H = dense_output_hessians(model, X, params=w)
    g = torch.Generator().manual_seed(0)
    return float(brute_force_tensor_norm(H, generator=g, n_starts=6).value)


def _jac_norm(model: Model, X: Tensor, w: Tensor) -> float:
    return float(torch.linalg.matrix_norm(jacobian(model, X, params=w), 2))


def _ascent(model: Model, X: Tensor, w0: Tensor, rho: float, objective: str) -> Tensor:
    """Projected gradient ascent inside B(w0, rho) on ||J(w)||_F^2 or on ||H_F(w)[u, u]||^2 with
    u the top direction of the Jacobian (a few steps: adversarial, not optimal)."""
    f = lambda v: model.apply_flat(v, X)  # noqa: E731
    w = w0.clone()
    u = torch.linalg.svd(jacobian(model, X, params=w0))[2][0]
    for _ in range(6):
        v = w.clone().requires_grad_(True)
        if objective == "jacobian":
            val = (torch.func.jacrev(f)(v) ** 2).sum()
        else:
            d2 = torch.func.jvp(lambda a: torch.func.jvp(f, (a,), (u,))[1], (v,), (u,))[1]
            val = (d2**2).sum()
        (grad,) = torch.autograd.grad(val, v)
        if float(grad.norm()) == 0.0:
            break
        w = w + 0.5 * rho * grad / grad.norm()
        step = w - w0
        if float(step.norm()) > rho:
            w = w0 + step * (rho / float(step.norm()))
    return w.detach()


def _check_sound(model: Model, X: Tensor, rho: float) -> tuple[float, float]:
    bound = beta_upper_bound(model, X, rho)
    assert bound is not None, bound_refusal(model)
    w0 = model.flat_params()
    g = torch.Generator().manual_seed(7)
    points = [w0]
    for t in range(3):
        d = torch.randn(w0.numel(), generator=g, dtype=torch.float64)
        points.append(w0 + (rho if t < 2 else 0.5 * rho) * d / d.norm())
    points += [_ascent(model, X, w0, rho, "jacobian"), _ascent(model, X, w0, rho, "hessian")]
    worst_h = worst_j = 0.0
    for w in points:
        assert float((w - w0).norm()) <= rho * (1 + 1e-12)
        h, j = _hessian_norm(model, X, w), _jac_norm(model, X, w)
        worst_h, worst_j = max(worst_h, h), max(worst_j, j)
        assert h <= bound.beta_upper, (h, bound.beta_upper)
        assert j <= bound.jacobian_upper, (j, bound.jacobian_upper)
    return bound.beta_upper / worst_h, bound.jacobian_upper / worst_j


@pytest.mark.parametrize("name", sorted(SPECS))
def test_bound_dominates_brute_force_norms_in_the_ball(name: str) -> None:
    model = load_model(SPECS[name])
    ratio_h, ratio_j = _check_sound(model, _inputs(model, 3, 1), RHO)
    print(f"{name}: bound / brute force = {ratio_h:.3g} (Hessian), {ratio_j:.3g} (Jacobian)")


def test_batchnorm_onnx_model_is_sound() -> None:
    """BatchNorm (eval) only comes from ONNX graphs: soundness on the imported model, whose
    forward is checked against the torch module here."""
    torch_model = BatchNormMLP().double().eval()
    model = load_model(export(torch_model, (3,)), format="onnx")
    X = _inputs(model, 3, 2)
    with torch.no_grad():
        assert torch.allclose(model.module(X).reshape(3, -1), torch_model(X), atol=1e-12)
    _check_sound(model, X, RHO)


def _onnx_graph_cases() -> dict[str, tuple[nn.Module, tuple[int, ...], int]]:
    """name -> (torch module, input shape, opset): graphs the running-error bound now covers."""
    from tests.plcore.estimate.test_rounding_chain import (
        _DenseJoin,
        _InceptionBlock,
        _ProjectionBlock,
        _TwoBranches,
    )
    from tests.plcore.models.test_onnx_convert_nn import _VectorLN

    return {
        "projection_shortcut": (_ProjectionBlock(), (1, 5, 5), 17),
        "parallel_branches": (_TwoBranches(), (1, 5, 5), 17),
        "decomposed_layernorm_op13": (_VectorLN(), (4,), 13),
        "concat_channels": (_InceptionBlock(), (1, 5, 5), 17),
        "concat_rows_with_its_input": (_DenseJoin(), (1, 5, 5), 17),
    }


@pytest.mark.parametrize(
    "name",
    [
        "projection_shortcut",
        "parallel_branches",
        "decomposed_layernorm_op13",
        "concat_channels",
        "concat_rows_with_its_input",
    ],
)
def test_onnx_graphs_with_merges_and_a_decomposed_layernorm_are_sound(name: str) -> None:
    torch_model, shape, opset = _onnx_graph_cases()[name]
    torch_model = torch_model.double().eval()
    model = load_model(export(torch_model, shape, opset=opset), format="onnx")
    X = _inputs(model, 3, 3)
    with torch.no_grad():
        assert torch.allclose(model.module(X).reshape(3, -1), torch_model(X), atol=1e-12)
    ratio_h, ratio_j = _check_sound(model, X, RHO)
    print(f"{name}: bound / brute force = {ratio_h:.3g} (Hessian), {ratio_j:.3g} (Jacobian)")


class _LinearTwice(nn.Module):
    """f = (W2 W1 x, W2 W1 x): a two-layer linear map joined with itself. On one sample both
    recursions are tight at the centre: sup ||J|| = sqrt(2 (||W1 x||^2 + ||W2||^2 ||x||^2)) and
    sup ||H_F[u, u]|| = sqrt(2) ||x|| (u splits evenly between W1 and W2, each of rank one)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(26)
        self.l1, self.l2 = nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.l2(self.l1(x))
        return torch.cat([y, y], dim=1)


def test_join_bound_is_tight_where_the_exact_norms_are_known() -> None:
    """Soundness alone cannot see a join that drops a branch (the other bounds have slack); on
    this net the bounds must equal the brute-force norms, so a join whose forward bound reads
    one input, or whose backward pass skips an input, falls below them."""
    model = load_model(export(_LinearTwice().double(), (3,)), format="onnx")
    X = _inputs(model, 1, 4)
    w0 = model.flat_params()
    bound = beta_upper_bound(model, X, 1e-9)
    assert bound is not None, bound_refusal(model)
    h, j = _hessian_norm(model, X, w0), _jac_norm(model, X, w0)
    assert math.isclose(h, math.sqrt(2.0) * float(X.norm()), rel_tol=1e-6)
    assert h <= bound.beta_upper <= 1.001 * h
    assert j <= bound.jacobian_upper <= 1.001 * j


# ----- the same bound from both routes ------------------------------------------------------


class _TorchCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 2, 3, padding=1, stride=2)
        self.c2 = nn.Conv2d(2, 2, 2, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.sigmoid(self.c2(torch.tanh(self.c1(x))))
        return self.fc(self.pool(h).flatten(1))


class _TorchResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 2, 3, padding=1)
        self.c2 = nn.Conv2d(2, 2, 3, padding=1)
        self.norm = nn.LayerNorm([2, 4, 4])
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.erf(self.c1(x))
        h = h + torch.sin(self.norm(self.c2(h)))
        return self.fc(self.gap(h).flatten(1))


class _TorchMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(3, 5), nn.Linear(5, 5), nn.Linear(5, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = nn.functional.softplus(self.l1(x))
        return torch.tanh(self.l3(nn.functional.softplus(self.l2(h))))


class _TorchGeluMLP(nn.Module):
    """nn.GELU, which torch exports before opset 20 as Div, Erf, Add, Mul, Mul."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(3, 5), nn.Linear(5, 4), nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.l3(nn.functional.gelu(self.l2(nn.functional.gelu(self.l1(x)))))


def _json_with_torch_weights(spec: dict[str, object], module: nn.Module) -> Model:
    """The JSON model with the torch module's parameters (same order: weights, then biases,
    layer by layer; the LayerNorm's gamma and beta after its input layer)."""
    model = load_model({**spec, "parameterization": "standard"})
    ours = list(model.module.parameters())
    theirs = [p.detach().to(torch.float64) for p in module.parameters()]
    assert [tuple(p.shape) for p in ours] == [tuple(p.shape) for p in theirs]
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            a.copy_(b)
    return model


ROUTES: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "conv_stride_padding_avgpool": ("cnn_stride_pool", _TorchCNN),
    "residual_layernorm_global_pool": ("residual_layernorm_global_pool", _TorchResidual),
    "mlp_output_activation": ("deep_mlp_standard_out_act", _TorchMLP),
    "mlp_decomposed_gelu": ("gelu_mlp", _TorchGeluMLP),
}


@pytest.mark.parametrize("kind", sorted(ROUTES))
def test_json_spec_and_its_onnx_export_get_the_same_bound(kind: str) -> None:
    spec_name, factory = ROUTES[kind]
    torch.manual_seed(11)
    module = factory().double().eval()
    js = _json_with_torch_weights(SPECS[spec_name], module)
    ox = load_model(export(module, js.input_shape), format="onnx")
    X = _inputs(js, 3, 5)
    with torch.no_grad():
        ref = functional_call(module, dict(module.named_parameters()), (X,))
        assert torch.allclose(js.module(X).reshape(3, -1), ref, atol=1e-12)
        assert torch.allclose(ox.module(X).reshape(3, -1), ref, atol=1e-12)
    for rho in (0.0, RHO):
        a, b = beta_upper_bound(js, X, rho), beta_upper_bound(ox, X, rho)
        assert a is not None and b is not None, bound_refusal(ox)
        assert math.isclose(a.beta_upper, b.beta_upper, rel_tol=1e-6), (a, b)
        assert math.isclose(a.jacobian_upper, b.jacobian_upper, rel_tol=1e-6)


def test_ntk_spec_and_its_own_onnx_export_get_the_same_bound() -> None:
    """An NTK spec exported from its own module: the scales become graph constants (a Mul after
    the MatMul, a Mul on the bias), which the bound reads as scalar maps."""
    model = load_model(SPECS["deep_mlp_ntk"])
    ox = load_model(export(model.module, model.input_shape), format="onnx")
    X = _inputs(model, 4, 6)
    a, b = beta_upper_bound(model, X, RHO), beta_upper_bound(ox, X, RHO)
    assert a is not None and b is not None, bound_refusal(ox)
    assert math.isclose(a.beta_upper, b.beta_upper, rel_tol=1e-6)
    assert math.isclose(a.jacobian_upper, b.jacobian_upper, rel_tol=1e-6)


# ----- refusals ---------------------------------------------------------------------------


class _MaxPoolCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(8, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(nn.functional.max_pool2d(torch.tanh(self.c(x)), 2).flatten(1))


class _Attention(nn.Module):
    """A product of two computed values (the core of attention)."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(3, 3), nn.Linear(3, 3)
        self.out = nn.Linear(3, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.q(x) * torch.tanh(self.k(x)))


def test_unsupported_models_are_refused_with_the_reason() -> None:
    relu = load_model({**SPECS["deep_mlp_ntk"], "activation": "relu"})
    assert "relu" in (bound_refusal(relu) or "")
    assert beta_upper_bound(relu, _inputs(relu, 2, 0), RHO) is None
    maxpool = load_model(export(_MaxPoolCNN().double(), (1, 4, 4)), format="onnx")
    assert "MaxPool" in (bound_refusal(maxpool) or "")
    attention = load_model(export(_Attention().double(), (3,)), format="onnx")
    assert "two computed values" in (bound_refusal(attention) or "")
    assert beta_upper_bound(attention, _inputs(attention, 2, 0), RHO) is None
