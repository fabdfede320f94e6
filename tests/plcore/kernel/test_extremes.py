"""kernel_extremes against eigvalsh: one-sided, and tight when the solves converge."""

from __future__ import annotations

import pytest
import torch

from plcore.errors import ShapeMismatchError
from plcore.kernel.extremes import kernel_extremes


def _spd(N: int, seed: int, low: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(N, 3 * N, generator=g, dtype=torch.float64)
    return J @ J.T / (3 * N) + low * torch.eye(N, dtype=torch.float64)


def test_cholesky_lanczos_matches_eigvalsh_from_the_correct_side() -> None:
    K = _spd(600, 0, 1e-3)
    ev = torch.linalg.eigvalsh(K)
    ex = kernel_extremes(K, generator=torch.Generator().manual_seed(1), tol=1e-10)
    assert ex.method == "cholesky-lanczos" and ex.converged
    assert ex.lambda_min_upper >= float(ev[0]) * (1 - 1e-12)
    assert ex.lambda_min_upper == pytest.approx(float(ev[0]), rel=1e-8)
    assert ex.lambda_max_lower <= float(ev[-1]) * (1 + 1e-12)
    assert ex.lambda_max_lower == pytest.approx(float(ev[-1]), rel=1e-8)


def test_unconverged_solves_stay_one_sided() -> None:
    K = _spd(600, 2, 1e-3)
    ev = torch.linalg.eigvalsh(K)
    ex = kernel_extremes(K, generator=torch.Generator().manual_seed(3), tol=1e-14, krylov_dim=2)
    assert ex.lambda_min_upper >= float(ev[0]) * (1 - 1e-12)
    assert ex.lambda_max_lower <= float(ev[-1]) * (1 + 1e-12)


def test_singular_or_small_kernels_use_eigvalsh() -> None:
    g = torch.Generator().manual_seed(4)
    J = torch.randn(600, 10, generator=g, dtype=torch.float64)
    singular = kernel_extremes(J @ J.T - 1e-9 * torch.eye(600, dtype=torch.float64), generator=g)
    assert singular.method == "eigvalsh" and singular.lambda_min_upper < 0
    small = kernel_extremes(_spd(20, 5, 0.1), generator=g)
    assert small.method == "eigvalsh"
    with pytest.raises(ShapeMismatchError, match="square"):
        kernel_extremes(torch.zeros(2, 3), generator=g)
