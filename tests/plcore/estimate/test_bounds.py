from __future__ import annotations

import math

import numpy as np
import pytest

from plcore.errors import OptionsError
from plcore.estimate.bounds import (
    certificate_gap,
    certificate_radius,
    closing_radius,
    lipschitz_upper_bound,
    mu_lower_bound,
    paper_mu_lower_bound,
    path_gap,
    path_length_radius,
    path_residual_threshold,
    residual_threshold,
)


def test_simple_bounds_follow_their_formulas() -> None:
    assert mu_lower_bound(4.0, 1.0, 0.5) == pytest.approx(2.25)
    assert mu_lower_bound(4.0, 1.0, 3.0) == 0.0
    assert lipschitz_upper_bound(3.0, 2.0, 0.5) == pytest.approx(4.0)
    assert paper_mu_lower_bound(4.0, 2.0, 9, 0.5, 0.1) == pytest.approx(4.0 - 2 * 2 * 3 * 0.5 * 0.1)
    assert certificate_radius(2.0, 3.0, 4.0) == pytest.approx(3.0)
    assert math.isinf(certificate_radius(2.0, 3.0, 0.0))


def test_negative_or_nan_arguments_are_rejected() -> None:
    with pytest.raises(OptionsError, match=r"'beta': -1\.0"):
        mu_lower_bound(1.0, -1.0, 1.0)
    with pytest.raises(OptionsError, match="rho"):
        lipschitz_upper_bound(1.0, 1.0, float("nan"))


def _grid_max(lambda0: float, jac: float, beta: float) -> tuple[float, float]:
    rho = np.linspace(0.0, math.sqrt(lambda0) / beta, 2_000_001)
    g = rho * (math.sqrt(lambda0) - beta * rho) ** 2 / (2 * (jac + beta * rho))
    i = int(np.argmax(g))
    return float(g[i]), float(rho[i])


@pytest.mark.parametrize(
    ("lambda0", "jac", "beta"),
    [(1.0, 1.0, 1.0), (0.01, 3.0, 0.2), (4.0, 2.5, 10.0), (1e-6, 50.0, 1e-3), (2.0, 1e4, 0.5)],
)
def test_residual_threshold_matches_a_fine_grid(lambda0: float, jac: float, beta: float) -> None:
    thr = residual_threshold(lambda0, jac, beta)
    g_max, rho_max = _grid_max(lambda0, jac, beta)
    assert thr.r_star == pytest.approx(g_max, rel=1e-9)
    assert thr.r_star >= g_max * (1 - 1e-12)  # the closed form is the true max
    assert thr.rho_star == pytest.approx(rho_max, rel=1e-4, abs=1e-9)


def test_residual_threshold_limits() -> None:
    assert residual_threshold(1.0, 1.0, 0.0).r_star == math.inf
    assert residual_threshold(0.0, 1.0, 1.0).r_star == 0.0


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.999])
def test_closing_radius_is_the_smallest_root(fraction: float) -> None:
    lambda0, jac, beta = 0.5, 2.0, 3.0
    r = fraction * residual_threshold(lambda0, jac, beta).r_star
    rho = closing_radius(lambda0, jac, beta, r)
    assert rho is not None
    assert certificate_gap(rho, lambda0, jac, beta) >= r
    grid = np.linspace(0.0, rho, 100_001)[:-1]
    g = grid * (math.sqrt(lambda0) - beta * grid) ** 2 / (2 * (jac + beta * grid))
    assert (g < r).all()
    # the certificate's own inequality holds at rho: R(rho) <= rho
    mu = mu_lower_bound(lambda0, beta, rho)
    assert certificate_radius(lipschitz_upper_bound(jac, beta, rho), r, mu) <= rho * (1 + 1e-12)


def test_closing_radius_none_and_closed_forms() -> None:
    lambda0, jac, beta = 0.5, 2.0, 3.0
    assert (
        closing_radius(lambda0, jac, beta, 1.01 * residual_threshold(lambda0, jac, beta).r_star)
        is None
    )
    assert closing_radius(0.0, jac, beta, 1.0) is None
    assert closing_radius(lambda0, jac, beta, 0.0) == 0.0
    assert closing_radius(lambda0, jac, 0.0, 0.1) == pytest.approx(2 * jac * 0.1 / lambda0)


@pytest.mark.parametrize(("lambda0", "beta"), [(1.0, 0.2), (0.03, 14.0), (2e-4, 1400.0)])
def test_path_residual_threshold_matches_a_fine_grid(lambda0: float, beta: float) -> None:
    thr = path_residual_threshold(lambda0, beta)
    rhos = np.linspace(0.0, math.sqrt(lambda0) / beta, 200_001)
    g = rhos * (math.sqrt(lambda0) - beta * rhos) / 2
    assert thr.r_star == pytest.approx(float(g.max()), rel=1e-8)
    assert thr.rho_star == pytest.approx(float(rhos[g.argmax()]), rel=1e-4)
    # on a smaller ball the max sits at its edge
    cap = 0.3 * thr.rho_star
    within = path_residual_threshold(lambda0, beta, cap)
    assert within.rho_star == cap and within.r_star == pytest.approx(path_gap(cap, lambda0, beta))
    # at any closing radius the path-length radius fits the ball
    rho = thr.rho_star
    mu = (math.sqrt(lambda0) - beta * rho) ** 2
    assert path_length_radius(thr.r_star, mu) == pytest.approx(rho)


@pytest.mark.parametrize("c", [1.0, 3.0, 100.0])
def test_path_theorem_is_never_weaker_than_the_papers(c: float) -> None:
    # ||J|| >= sqrt(lambda): the path-length radius 2 ||r|| / sqrt(mu) <= 2 L_F ||r|| / mu, so
    # its threshold is at least the paper form's, by about c = ||J|| / sqrt(lambda) for large c
    lam, beta = 0.04, 3.0
    old = residual_threshold(lam, c * math.sqrt(lam), beta).r_star
    new = path_residual_threshold(lam, beta).r_star
    assert new >= old
    if c >= 100:
        assert new / old > c
    assert path_length_radius(1.0, 0.25) <= certificate_radius(0.5, 1.0, 0.25)
    assert path_length_radius(1.0, 0.0) == math.inf
    assert path_residual_threshold(0.0, 1.0).r_star == 0.0
    assert path_residual_threshold(1.0, 0.0).r_star == math.inf
