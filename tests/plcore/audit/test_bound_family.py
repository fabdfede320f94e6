"""Audit: every reported bound of the rigorous tier against dense brute force, over a family of
random small models (tests/plcore/audit/family.py: MLPs of depth 1-3 with every smooth
activation, tied weights, a CNN).

Independent references: dense Jacobians and Hessians of the source torch module
(tests/plcore/audit_support.py, torch.autograd.functional on functional_call), the tensor norm by
brute-force optimisation, numpy eigvalsh, and 50-digit mpmath eigenvalues. A proven bound must
hold at EVERY point of its ball, so each is checked at random points of the ball (half on the
sphere). Rigorous certificates of ``certify`` are replayed by the independent GD loop of
audit_support in tests/plcore/audit/test_replay.py.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import torch

from plcore.estimate.analytic import beta_upper_bound, shared_structure
from plcore.estimate.bounds import lipschitz_upper_bound, mu_lower_bound
from plcore.estimate.spectral import certified_spectrum
from plcore.kernel import tangent_kernel
from tests.plcore.audit.family import SMOOTH, Case, cnn, inputs, mlp_cases, tied_mlp
from tests.plcore.audit_support import (
    FlatMap,
    ball_points,
    kernel_eigenvalues,
    spectral_norm,
    tensor_norm_brute_force,
)

CASES = mlp_cases()
RHO = 0.3
POINTS = 4


def _flat(case: Case) -> FlatMap:
    n = case.X.shape[0]
    return FlatMap.of(case.model.module, case.X, torch.zeros(n * case.model.output_dim))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_proven_hessian_and_jacobian_bounds_hold_at_random_points_of_the_ball(case: Case) -> None:
    F = _flat(case)
    bound = beta_upper_bound(case.model, case.X, RHO)
    assert bound is not None
    g = torch.Generator().manual_seed(7)
    w0 = F.w0()
    for w in [w0, *ball_points(w0, RHO, POINTS, g)]:
        assert tensor_norm_brute_force(F.hessians(w), starts=6) <= bound.beta_upper
        assert spectral_norm(F.jacobian(w)) <= bound.jacobian_upper


@pytest.mark.parametrize("case", CASES[:8], ids=lambda c: c.name)
def test_weyl_bounds_from_the_floating_point_spectrum_hold_in_the_ball(case: Case) -> None:
    """mu(rho) >= (sqrt(lambda0_lower) - beta_ub rho)^2, L_F <= ||J0||_upper + beta_ub rho."""
    F = _flat(case)
    K = tangent_kernel(case.model, case.X)
    cert = certified_spectrum(K, case.model)
    bound = beta_upper_bound(case.model, case.X, RHO)
    assert bound is not None and cert.lambda_min_lower > 0
    rho = RHO * 0.5
    mu_lb = mu_lower_bound(cert.lambda_min_lower, bound.beta_upper, rho)
    L_ub = lipschitz_upper_bound(cert.jacobian_norm_upper, bound.beta_upper, rho)
    g = torch.Generator().manual_seed(11)
    for w in ball_points(F.w0(), rho, POINTS, g):
        J = F.jacobian(w)
        assert float(kernel_eigenvalues(J)[0]) >= mu_lb
        assert spectral_norm(J) <= L_ub


def _exact_extremes(J: np.ndarray) -> tuple[mpmath.mpf, mpmath.mpf]:
    mpmath.mp.dps = 40
    A = mpmath.matrix(J.tolist())
    ev = mpmath.eigsy(A * A.T, eigvals_only=True)
    vals = sorted(ev[i] for i in range(ev.rows))
    return vals[0], vals[-1]


@pytest.mark.parametrize(
    "case",
    [CASES[0], CASES[5], CASES[-1], Case("cnn-tanh", cnn("tanh", seed=3), inputs(3, (1, 3, 3), 3))],
    ids=lambda c: c.name,
)
def test_floating_point_kernel_bounds_bracket_the_50_digit_spectrum(case: Case) -> None:
    F = _flat(case)
    lo, hi = _exact_extremes(F.jacobian(F.w0()))
    cert = certified_spectrum(tangent_kernel(case.model, case.X), case.model)
    assert mpmath.mpf(cert.lambda_min_lower) <= lo
    assert mpmath.mpf(cert.jacobian_norm_upper) ** 2 >= hi
    assert cert.lambda_min_lower >= float(lo) * (1 - 1e-8)


def test_relu_cnn_gets_no_proven_hessian_bound() -> None:
    """Smooth CNNs are covered (tests/plcore/estimate/test_analytic_graph.py); ReLU is not."""
    model = cnn("relu", seed=0)
    assert beta_upper_bound(model, inputs(2, (1, 3, 3), 0), RHO) is None


@pytest.mark.parametrize("act", SMOOTH)
def test_tied_models_get_no_proven_bound(act: str) -> None:
    model = tied_mlp(act, seed=1)
    X = inputs(3, (3,), 1)
    assert shared_structure(model.module) is not None
    assert beta_upper_bound(model, X, RHO) is None


def test_deduplicated_chain_of_a_tied_model_is_a_different_function() -> None:
    """The old failure: nn.Module.children() lists the shared module once, so a chain built from
    it bounds a shorter network than the one that runs; the proven bound is refused instead."""
    from torch import nn

    model = tied_mlp("tanh", seed=4, width=6)
    X = inputs(3, (3,), 4)
    short = nn.Sequential(*model.module.children())  # the shared module appears once here
    assert len(short) < len(model.module)
    with torch.no_grad():
        assert not torch.allclose(short(X), model.module(X))
    assert beta_upper_bound(model, X, 0.0) is None
