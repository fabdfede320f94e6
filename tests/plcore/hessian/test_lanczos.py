from __future__ import annotations

import pytest
import torch

from plcore.errors import Cancelled
from plcore.hessian.lanczos import top_abs_eigenpair


def _symmetric(evals: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(evals.numel(), evals.numel(), generator=g))
    return Q @ torch.diag(evals) @ Q.T


def test_finds_a_dominant_negative_eigenvalue_with_its_vector() -> None:
    evals = torch.linspace(-1.0, 1.0, 80)
    evals[0] = -3.0
    A = _symmetric(evals, 0)
    v0 = torch.randn(80, generator=torch.Generator().manual_seed(1))
    pair = top_abs_eigenpair(lambda v: A @ v, v0, krylov_dim=20, tol=1e-12, max_restarts=50)
    assert pair.converged
    assert abs(pair.theta + 3.0) < 1e-10
    assert float((A @ pair.vector - pair.theta * pair.vector).norm()) < 1e-9


def test_restarts_are_needed_and_counted_for_a_small_krylov_space() -> None:
    evals = torch.linspace(0.0, 1.0, 200)
    evals[-1] = 1.05  # small gap: a 10-dimensional space does not resolve it at once
    A = _symmetric(evals, 2)
    v0 = torch.randn(200, generator=torch.Generator().manual_seed(3))
    pair = top_abs_eigenpair(lambda v: A @ v, v0, krylov_dim=10, tol=1e-10, max_restarts=200)
    assert pair.converged and pair.matvecs > 10
    assert abs(pair.theta - 1.05) < 1e-9


def test_reports_non_convergence_when_restarts_run_out() -> None:
    evals = torch.linspace(0.0, 1.0, 200)
    evals[-1] = 1.0001
    A = _symmetric(evals, 4)
    v0 = torch.randn(200, generator=torch.Generator().manual_seed(5))
    pair = top_abs_eigenpair(lambda v: A @ v, v0, krylov_dim=3, tol=1e-14, max_restarts=1)
    assert not pair.converged
    assert pair.residual > 0


def test_zero_operator_gives_zero_and_converges() -> None:
    pair = top_abs_eigenpair(lambda v: 0.0 * v, torch.ones(7))
    assert pair.theta == 0.0 and pair.converged


def test_the_check_runs_before_every_matvec_and_can_stop_the_solve() -> None:
    A = _symmetric(torch.linspace(0.0, 1.0, 50), 6)
    calls: list[int] = []
    products: list[int] = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 7:
            raise Cancelled("stop")

    def matvec(v: torch.Tensor) -> torch.Tensor:
        products.append(1)
        return A @ v

    with pytest.raises(Cancelled, match="stop"):
        top_abs_eigenpair(matvec, torch.ones(50), krylov_dim=5, tol=1e-14, check=check)
    assert len(products) == 6  # the 7th product never ran


def test_one_cycle_solve_is_an_inexact_lower_estimate() -> None:
    evals = torch.linspace(0.0, 1.0, 100)
    A = _symmetric(evals, 7)
    v0 = torch.randn(100, generator=torch.Generator().manual_seed(8))
    pair = top_abs_eigenpair(lambda v: A @ v, v0, krylov_dim=4, tol=1e-14, max_restarts=0)
    assert pair.matvecs == 4 and not pair.converged
    assert 0.0 < pair.theta <= 1.0 + 1e-12  # a Ritz value never exceeds the top eigenvalue
