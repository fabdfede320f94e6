"""The path certificate: cheap filter, full check, tiers, steps-needed estimate."""

from __future__ import annotations

import math

import pytest
import torch

from plcore.certificate.path import PathChecker, steps_needed
from plcore.certificate.radius import ProvenBeta
from plcore.estimate.bounds import path_residual_threshold


def _checker(
    lam: float, J: float, beta_h: float, proven: float | None = None, second: float = 0.0
) -> PathChecker:
    return PathChecker(
        spectrum_at=lambda w: (lam, J),
        beta_estimate=0.1,
        hessian_norm_at=lambda w: beta_h,
        second_directional_norm=lambda w, u: second,
        proven_beta_at=lambda w, rho: None if proven is None else ProvenBeta(proven, None, "p"),
        certified_spectrum_at=lambda w: (lam, J, 0.0),
    )


def _call(c: PathChecker, t: int, rn: float, gn: float) -> float | None:
    r = torch.zeros(4)
    r[0] = rn
    g = torch.zeros(6)
    g[0] = gn
    return c(t, torch.zeros(6), r, g)


def test_estimated_hit_uses_max_of_w0_and_wt_hessian_and_returns_its_step() -> None:
    c = _checker(lam=1.0, J=1.0, beta_h=0.2)
    thr = path_residual_threshold(1.0, 0.2)
    step = _call(c, 4, rn=0.5 * thr.r_star, gn=1.0)
    assert c.hit is not None and c.hit.tier == "estimated" and c.hit.step == 4
    assert c.hit.beta == 0.2 and step == c.hit.step_size
    s = 1.0 - 0.2 * c.hit.rho
    assert c.hit.mu == pytest.approx(s * s)
    L = 1.0 + 0.2 * c.hit.rho
    assert c.hit.step_size == pytest.approx(1 / (L * L + 0.2 * 0.5 * thr.r_star))
    # the path-length radius 2 ||r|| / sqrt(mu), never larger than the paper's 2 L_F ||r|| / mu
    assert c.hit.radius == pytest.approx(2 * 0.5 * thr.r_star / math.sqrt(c.hit.mu))
    assert c.hit.radius <= 2 * L * 0.5 * thr.r_star / c.hit.mu
    assert c.hit.radius <= c.hit.rho  # the theorem's radius fits the ball the beta holds on
    assert thr.r_star == pytest.approx(1.0 / (8 * 0.2))  # lambda / (8 beta), independent of J


def test_no_hit_above_threshold() -> None:
    c = _checker(lam=1.0, J=1.0, beta_h=0.2)
    thr = path_residual_threshold(1.0, 0.2)
    assert _call(c, 0, rn=2 * thr.r_star, gn=1.0) is None and c.hit is None


def test_proven_bound_gives_rigorous_hit() -> None:
    c = _checker(lam=1.0, J=1.0, beta_h=0.2, proven=0.05)
    _call(c, 0, rn=0.01, gn=1.0)
    assert c.hit is not None and c.hit.tier == "rigorous" and c.hit.beta == 0.05


def test_cheap_filter_skips_full_check() -> None:
    full: list[int] = []

    def spectrum(w: torch.Tensor) -> tuple[float, float]:
        full.append(1)
        return 1.0, 1.0

    c = _checker(lam=1.0, J=1.0, beta_h=0.2, second=100.0)
    c.spectrum_at = spectrum
    _call(c, 0, rn=1.0, gn=1.0)  # lambda <= 1, beta >= 100: r* tiny, no full check
    assert full == [] and c.checks == 0


def test_distance_after_hit_is_tracked() -> None:
    c = _checker(lam=1.0, J=1.0, beta_h=0.0)
    _call(c, 0, rn=1e-3, gn=1.0)
    assert c.hit is not None
    c(1, torch.ones(6), torch.ones(4), torch.ones(6))
    assert c.max_distance_after == pytest.approx(math.sqrt(6))


def test_steps_needed_extrapolates_observed_rate() -> None:
    losses = [0.5 * 0.9**t for t in range(101)]
    r_star = math.sqrt(2 * losses[-1]) / 10
    need = steps_needed(losses, r_star)
    assert need is not None
    assert 0.5 * 0.9**need <= 0.5 * r_star**2 * (1 + 1e-9)
    assert steps_needed([1.0, 1.0, 1.0], 0.1) is None


def test_after_an_estimated_hit_a_later_rigorous_one_replaces_it() -> None:
    proven: list[float | None] = [None]
    c = _checker(lam=1.0, J=1.0, beta_h=0.2)
    c.proven_beta_at = lambda w, rho: (
        None if proven[0] is None else ProvenBeta(proven[0], None, "p")
    )
    thr = path_residual_threshold(1.0, 0.2)
    first = _call(c, 4, rn=0.5 * thr.r_star, gn=1.0)
    assert c.hit is not None and c.hit.tier == "estimated" and first == c.hit.step_size
    proven[0] = 0.05
    second = _call(c, 9, rn=0.01, gn=1.0)
    assert c.hit.tier == "rigorous" and c.hit.step == 9
    assert c.estimated_hit is not None and c.estimated_hit.step == 4
    assert second is None or second == c.hit.step_size
    assert _call(c, 20, rn=0.001, gn=1.0) is None and c.hit.step == 9  # rigorous: done


def test_rigorous_only_checker_ignores_estimated_closures() -> None:
    c = _checker(lam=1.0, J=1.0, beta_h=0.2)
    c.rigorous_only = True
    thr = path_residual_threshold(1.0, 0.2)
    assert _call(c, 4, rn=0.5 * thr.r_star, gn=1.0) is None and c.hit is None


def test_a_smaller_run_step_is_kept_and_sets_the_rate() -> None:
    c = _checker(lam=1.0, J=1.0, beta_h=0.2, proven=0.05)
    c.run_step = 1e-3
    assert _call(c, 0, rn=0.01, gn=1.0) is None  # no switch: the run's step is within
    assert c.hit is not None and c.hit.step_size == 1e-3
    assert c.hit.rate == pytest.approx(1 - 1e-3 * c.hit.mu)


def test_rigorous_hit_reports_r_star_of_the_ball_the_beta_holds_on() -> None:
    # the proven beta holds on B(w_t, 2 R_t) only: r* is the max over that ball, not beyond
    c = _checker(lam=1.0, J=1.0, beta_h=0.2, proven=0.05)
    rn = 0.01
    _call(c, 0, rn=rn, gn=1.0)
    assert c.hit is not None and c.hit.tier == "rigorous"
    R_t = 2.0 * rn / 1.0  # 2 ||r|| / sqrt(lambda)
    rho_a = 2 * R_t
    assert c.hit.r_star == pytest.approx(rho_a * (1.0 - 0.05 * rho_a) / 2)
    assert c.hit.r_star < path_residual_threshold(1.0, 0.05).r_star
    assert c.hit.rho <= rho_a


def test_rigorous_tier_needs_floating_point_bounds() -> None:
    c = _checker(lam=1.0, J=1.0, beta_h=0.2, proven=0.05)
    c.certified_spectrum_at = None
    _call(c, 0, rn=0.01, gn=1.0)
    assert c.hit is None or c.hit.tier == "estimated"
