"""Floating-point eigenvalue bounds of plcore.estimate.psd against exact arithmetic (mpmath)."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from plcore.errors import ShapeMismatchError
from plcore.estimate.psd import (
    accumulation_length,
    certified_lambda_max_upper,
    certified_lambda_min_lower,
    gamma,
    norm_upper,
    spectral_norm_upper,
)

mpmath.mp.dps = 60


def _exact_gram_eigs(J: torch.Tensor) -> list[mpmath.mpf]:
    """Eigenvalues of J J^T formed and diagonalised in 60-digit arithmetic from the float64 J."""
    A = mpmath.matrix(J.tolist())
    K = A * A.T
    ev = mpmath.eigsy(K, eigvals_only=True)
    return sorted(ev[i] for i in range(K.rows))


def _random_jacobian(n: int, m: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, m, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lambda_min_lower_is_below_the_exact_eigenvalue_and_close_to_it(seed: int) -> None:
    J = _random_jacobian(6, 40, seed)
    exact = _exact_gram_eigs(J)
    b = certified_lambda_min_lower(J @ J.T, accumulation=accumulation_length(40))
    assert b.certified
    assert mpmath.mpf(b.value) <= exact[0]
    assert b.value >= float(exact[0]) * (1 - 1e-8)


@pytest.mark.parametrize("seed", [0, 1])
def test_lambda_max_upper_is_above_the_exact_eigenvalue_and_close_to_it(seed: int) -> None:
    J = _random_jacobian(5, 30, seed, scale=3.0)
    exact = _exact_gram_eigs(J)
    b = certified_lambda_max_upper(J @ J.T, accumulation=accumulation_length(30))
    assert b.certified
    assert mpmath.mpf(b.value) >= exact[-1]
    assert b.value <= float(exact[-1]) * (1 + 1e-8)


def test_a_bad_eigenvalue_estimate_is_corrected_downwards() -> None:
    J = _random_jacobian(4, 20, 3)
    exact = _exact_gram_eigs(J)
    b = certified_lambda_min_lower(J @ J.T, accumulation=24, estimate=float(exact[0]) * 1.5)
    assert b.certified and b.attempts > 1
    assert mpmath.mpf(b.value) <= exact[0]


def test_singular_kernel_is_refused() -> None:
    J = _random_jacobian(5, 20, 4)
    J[4] = J[3]  # two equal rows: K singular
    b = certified_lambda_min_lower(J @ J.T, accumulation=24)
    assert not b.certified and b.value == 0.0


def test_nearly_singular_kernel_gives_no_bound_above_the_exact_eigenvalue() -> None:
    J = _random_jacobian(5, 20, 5)
    J[4] = J[3] + 1e-7 * J[0]
    exact = _exact_gram_eigs(J)
    b = certified_lambda_min_lower(J @ J.T, accumulation=24)
    assert mpmath.mpf(b.value) <= exact[0]


def test_long_accumulation_widens_the_margin() -> None:
    J = _random_jacobian(4, 20, 6)
    K = J @ J.T
    short = certified_lambda_min_lower(K, accumulation=24)
    long = certified_lambda_min_lower(K, accumulation=10**9)
    assert long.value < short.value


def test_norm_upper_is_above_the_exact_norm() -> None:
    v = _random_jacobian(1, 1000, 7).reshape(-1)
    exact = mpmath.sqrt(mpmath.fsum(mpmath.mpf(x) ** 2 for x in v.tolist()))
    up = norm_upper(v)
    assert mpmath.mpf(up) >= exact
    assert up <= float(exact) * (1 + 1e-12)


@pytest.mark.parametrize("shape", [(7, 3), (3, 9)])
def test_spectral_norm_upper_is_above_the_exact_norm(shape: tuple[int, int]) -> None:
    W = _random_jacobian(*shape, seed=8)
    exact = mpmath.sqrt(_exact_gram_eigs(W if shape[0] <= shape[1] else W.T)[-1])
    up = spectral_norm_upper(W)
    assert mpmath.mpf(up) >= exact
    assert up <= float(exact) * (1 + 1e-8)


def test_gamma_is_inf_past_half() -> None:
    assert gamma(2**52) == math.inf
    assert gamma(10) == pytest.approx(10 * 2.0**-53)


def test_non_square_kernel_is_rejected() -> None:
    with pytest.raises(ShapeMismatchError, match=r"square matrix, got shape \(2, 3\)"):
        certified_lambda_min_lower(torch.zeros(2, 3, dtype=torch.float64), accumulation=3)
