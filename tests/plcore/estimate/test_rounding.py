"""The running-error bounds E_J and E_F against 50-digit recomputations with mpmath.

The reference values are computed from the model's stored weights and constants in 50-digit
arithmetic (mpmath), by formulas written here (the MLP's layer recursion, the ONNX oracle's
source formula), not by the bound's code. Measured ratios bound / true error: 36 to about 500.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mpmath
import pytest
import torch
from torch import Tensor

from plcore import load_model
from plcore.estimate.activation_constants import activation_bounds
from plcore.estimate.rounding import (
    DERIV_ABS_U,
    GELU_ABS_U,
    LIB_ULPS,
    corrected_lambda_min_lower,
    corrected_upper,
    evaluation_bound_refusal,
    evaluation_error_bound,
)
from plcore.models.base import Model
from plcore.models.layers import ACTIVATIONS, Activation, Dense
from plcore.models.onnx_import import load_onnx_model
from plcore.models.params import select_parameters
from tests.plcore.models.torch_oracles import NTKMLP, SmallCNN, export

mpmath.mp.dps = 50
MP = mpmath.mpf
U = 2.0**-53
Mpf = Any


def _sig(x: Mpf) -> Mpf:
    return 1 / (1 + mpmath.exp(-x))


def _npdf(x: Mpf) -> Mpf:
    return mpmath.exp(-x * x / 2) / mpmath.sqrt(2 * mpmath.pi)


PHI: dict[str, tuple[Callable[[Mpf], Mpf], Callable[[Mpf], Mpf]]] = {
    "identity": (lambda x: x, lambda x: MP(1)),
    "tanh": (mpmath.tanh, lambda x: 1 - mpmath.tanh(x) ** 2),
    "erf": (mpmath.erf, lambda x: 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-x * x)),
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x))),
    "softplus": (lambda x: mpmath.log(1 + mpmath.exp(x)), _sig),
    "gelu": (
        lambda x: x * (1 + mpmath.erf(x / mpmath.sqrt(2))) / 2,
        lambda x: (1 + mpmath.erf(x / mpmath.sqrt(2))) / 2 + x * _npdf(x),
    ),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) + x * _sig(x) * (1 - _sig(x))),
    "sin": (mpmath.sin, mpmath.cos),
}


def _dense(W: list[list[float]], b: list[float], s: float, t: float, h: list[Mpf]) -> list[Mpf]:
    return [
        MP(s) * mpmath.fsum(MP(wi) * hi for wi, hi in zip(row, h, strict=True)) + MP(t) * MP(bi)
        for row, bi in zip(W, b, strict=True)
    ]


def _mlp_exact(model: Model, X: Tensor) -> tuple[list[Mpf], list[list[Mpf]]]:
    """F (flat, sample-major) and J (N x m, trainable parameters in order) in 50 digits."""
    layers = [m for m in model.module if isinstance(m, Dense | Activation)]
    names = {id(m): name for name, m in model.module.named_children()}
    F_flat: list[Mpf] = []
    J_rows: list[list[Mpf]] = []
    for x in X.tolist():
        hs: list[list[Mpf]] = [[MP(v) for v in x]]
        for m in layers:
            if isinstance(m, Dense):
                W = m.weight.detach().tolist()
                b = m.bias.detach().tolist() if m.bias is not None else [0.0] * len(W)
                hs.append(_dense(W, b, m.weight_scale, m.bias_scale, hs[-1]))
            else:
                assert isinstance(m, Activation)
                hs.append([PHI[m.name][0](v) for v in hs[-1]])
        F_flat += hs[-1]
        for c in range(len(hs[-1])):
            g = [MP(1) if i == c else MP(0) for i in range(len(hs[-1]))]
            grads: dict[str, list[Mpf]] = {}
            for j in range(len(layers) - 1, -1, -1):
                m = layers[j]
                if isinstance(m, Dense):
                    W = m.weight.detach().tolist()
                    s, t = MP(m.weight_scale), MP(m.bias_scale)
                    grads[f"{names[id(m)]}.weight"] = [s * gi * hi for gi in g for hi in hs[j]]
                    grads[f"{names[id(m)]}.bias"] = [t * gi for gi in g]
                    g = [
                        s * mpmath.fsum(g[r] * MP(W[r][i]) for r in range(len(g)))
                        for i in range(len(W[0]))
                    ]
                else:
                    assert isinstance(m, Activation)
                    g = [gi * PHI[m.name][1](ai) for gi, ai in zip(g, hs[j], strict=True)]
            J_rows.append([v for name in model.named_params() for v in grads[name]])
    return F_flat, J_rows


def _true_errors(model: Model, X: Tensor, F_mp: list[Mpf], J_mp: list[list[Mpf]]) -> tuple:
    w = model.flat_params()
    F = model.apply_flat(w, X).tolist()
    J = torch.func.jacrev(lambda v: model.apply_flat(v, X))(w).tolist()
    fe = mpmath.sqrt(mpmath.fsum((MP(a) - b) ** 2 for a, b in zip(F, F_mp, strict=True)))
    je = mpmath.sqrt(
        mpmath.fsum(
            (MP(a) - b) ** 2
            for ra, rb in zip(J, J_mp, strict=True)
            for a, b in zip(ra, rb, strict=True)
        )
    )
    return float(fe), float(je), float(torch.tensor(J).norm())


def _check(model: Model, X: Tensor, F_mp: list[Mpf], J_mp: list[list[Mpf]]) -> tuple:
    F_err, J_err, J_norm = _true_errors(model, X, F_mp, J_mp)
    bound = evaluation_error_bound(model, X)
    assert bound is not None
    assert F_err <= bound.output
    assert J_err <= bound.jacobian_fro
    # not absurdly loose: within 1e4 of the true error (or of u times the size when it is 0)
    assert bound.jacobian_fro <= 1e4 * max(J_err, U * J_norm)
    assert bound.output <= 1e4 * max(F_err, U)
    return bound.jacobian_fro / J_err, bound.output / F_err


CASES = [
    ("tanh", [5], "ntk", 1),
    ("erf", [4, 3], "standard", 2),
    ("sigmoid", [3, 4, 3], "ntk", 1),
    ("softplus", [4], "standard", 1),
    ("gelu", [4, 3], "ntk", 2),
    ("silu", [3], "ntk", 1),
    ("sin", [3, 3], "standard", 1),
    ("identity", [4], "ntk", 2),
]


def _spec(act: str, widths: list[int], param: str, k: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "mlp",
        "input_dim": 3,
        "widths": widths,
        "output_dim": k,
        "activation": act,
        "parameterization": param,
        "seed": 7,
    }
    if param == "ntk":
        spec |= {"weight_std": 1.5, "bias_std": 0.3}
    return spec


def _inputs(n: int = 4, scale: float = 2.0) -> Tensor:
    return (
        torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * scale
    )


@pytest.mark.parametrize(("act", "widths", "param", "k"), CASES)
def test_bound_covers_the_true_evaluation_error_of_an_mlp_and_is_not_absurdly_loose(
    act: str, widths: list[int], param: str, k: int
) -> None:
    model = load_model(_spec(act, widths, param, k))
    X = _inputs()
    ratio_J, ratio_F = _check(model, X, *_mlp_exact(model, X))
    assert ratio_J >= 1.0 and ratio_F >= 1.0


def test_softplus_above_its_threshold_is_covered() -> None:
    # torch's softplus returns x above 20: an error of up to exp(-20) ~ 2e-9, far above 4 ulp
    model = load_model(_spec("softplus", [4], "ntk", 1))
    X = _inputs(scale=40.0)
    _, J_err, _ = _true_errors(model, X, *_mlp_exact(model, X))
    bound = evaluation_error_bound(model, X)
    assert bound is not None and J_err > 1e-12
    assert J_err <= bound.jacobian_fro


def test_frozen_feature_spec_model_is_covered() -> None:
    model = select_parameters(load_model(_spec("tanh", [6, 5], "ntk", 2)), frozen=["0.*", "4.*"])
    assert model.affine_in_params is False  # the middle layer still trains behind tanh
    last = select_parameters(load_model(_spec("tanh", [6], "ntk", 2)), frozen=["0.*"])
    assert last.affine_in_params
    for m in (model, last):
        X = _inputs()
        _check(m, X, *_mlp_exact(m, X))


def _ntkmlp_exact(src: NTKMLP, X: Tensor, trainable: tuple[str, ...]) -> tuple:
    """f(x) = V tanh(W x / sqrt(d) + 0.1 b) / sqrt(h) + 0.1 c in 50 digits (the source formula,
    with the float64 constants the source uses)."""
    W, b, V = src.W.tolist(), src.b.tolist(), src.V.tolist()
    c = src.c.tolist()
    sd, sh, tenth = MP(math.sqrt(src.d)), MP(math.sqrt(src.h)), MP(0.1)
    F_flat, J_rows = [], []
    for x in X.tolist():
        pre = [
            a / sd + tenth * MP(bi)
            for a, bi in zip(
                _dense(W, [0.0] * len(W), 1.0, 0.0, [MP(v) for v in x]), b, strict=True
            )
        ]
        z = [mpmath.tanh(p) for p in pre]
        out = [
            mpmath.fsum(MP(vi) * zi for vi, zi in zip(row, z, strict=True)) / sh + tenth * MP(ci)
            for row, ci in zip(V, c, strict=True)
        ]
        F_flat += out
        for o in range(len(out)):
            g_pre = [MP(V[o][i]) / sh * (1 - z[i] ** 2) for i in range(len(z))]
            grads = {
                "W": [g_pre[i] * MP(xj) / sd for i in range(len(z)) for xj in x],
                "b": [tenth * gi for gi in g_pre],
                "V": [(zi / sh if r == o else MP(0)) for r in range(len(V)) for zi in z],
                "c": [tenth if r == o else MP(0) for r in range(len(c))],
            }
            J_rows.append(
                [v for name in ("W", "b", "V", "c") if name in trainable for v in grads[name]]
            )
    return F_flat, J_rows


@pytest.mark.parametrize("trainable", [("V", "c"), ("W", "b", "V", "c")])
def test_onnx_mlp_chain_is_covered(trainable: tuple[str, ...]) -> None:
    src = NTKMLP()
    model = select_parameters(load_onnx_model(export(src, (3,))), trainable=list(trainable))
    X = _inputs(5)
    _check(model, X, *_ntkmlp_exact(src, X, trainable))


def test_models_outside_the_chain_are_refused_with_a_reason() -> None:
    cnn = load_onnx_model(export(SmallCNN(), (1, 4, 4)))
    assert evaluation_bound_refusal(cnn) is None  # image chains: test_rounding_conv.py
    relu = load_model(_spec("tanh", [4], "ntk", 1) | {"activation": "relu"})
    assert "'relu' has no running-error bound" in (evaluation_bound_refusal(relu) or "")
    assert evaluation_error_bound(relu, _inputs()) is None
    assert evaluation_bound_refusal(load_model(_spec("tanh", [4], "ntk", 1))) is None


@pytest.mark.parametrize("name", ["tanh", "erf", "sigmoid", "softplus", "gelu", "silu", "sin"])
def test_library_functions_meet_the_assumed_accuracy(name: str) -> None:
    """The stated assumption: phi within LIB_ULPS ulp, the autograd derivative within
    DERIV_ABS_U u max(1, sup|phi'|) (softplus below its threshold 20, handled separately)."""
    x = torch.linspace(-19.5, 19.5, 1601, dtype=torch.float64)
    x = torch.cat([x, torch.tensor([1e-300, -3e-8, 7e-5, 0.5, 1.7])])
    act = Activation(name)
    xr = x.clone().requires_grad_(True)
    y = act(xr)
    (dy,) = torch.autograd.grad(y.sum(), xr)
    d1, _ = activation_bounds(ACTIVATIONS[name])
    for xi, yi, di in zip(x.tolist(), y.tolist(), dy.tolist(), strict=True):
        phi, dphi = PHI[name][0](MP(xi)), PHI[name][1](MP(xi))
        extra = GELU_ABS_U * U * abs(xi) if name == "gelu" else 0.0
        assert abs(MP(yi) - phi) <= 2 * U * LIB_ULPS * abs(phi) + 2.0**-1000 + extra, (xi, yi)
        assert abs(MP(di) - dphi) <= DERIV_ABS_U * U * max(1.0, d1), (xi, di)


def test_weyl_corrections_hold_for_a_perturbed_jacobian_against_eigh() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        J = torch.randn(5, 12, generator=g, dtype=torch.float64)
        E = torch.randn(5, 12, generator=g, dtype=torch.float64)
        E *= 0.05 / E.norm()
        lam = float(torch.linalg.eigvalsh(J @ J.T)[0])
        lam_exact = float(torch.linalg.eigvalsh((J + E) @ (J + E).T)[0])
        lower = corrected_lambda_min_lower(lam * (1 - 1e-12), 0.05)
        assert 0 < lower <= lam_exact
        # the naive lambda - E_J is not a bound in general; ours is within (2 E_J sqrt(lam))
        assert lam - lower <= 2 * 0.05 * math.sqrt(lam) + 1e-12
        Jn = float(torch.linalg.matrix_norm(J + E, ord=2))
        assert Jn <= corrected_upper(float(torch.linalg.matrix_norm(J, ord=2)), 0.05)
    assert corrected_lambda_min_lower(1e-4, 0.02) == 0.0
