"""The path certificate: cheap filter, full check, tiers, steps-needed estimate."""

from __future__ import annotations

import math

import pytest
import torch

from plcore.certificate.path import PathChecker, steps_needed
from plcore.certificate.radius import ProvenBeta
from plcore.estimate.bounds import residual_threshold


def _checker(
    lam: float, J: float, beta_h: float, proven: float | None = None, second: float = 0.0
) -> PathChecker:
    return PathChecker(
        spectrum_at=lambda w: (lam, J),
        beta_estimate=0.1,
        hessian_norm_at=lambda w: beta_h,
        second_directional_norm=lambda w, u: second,
        proven_beta_at=lambda w, rho: None if proven is None else ProvenBeta(proven, None, "p"),
    )


def _call(c: PathChecker, t: int, rn: float, gn: float) -> float | None:
    r = torch.zeros(4)
    r[0] = rn
    g = torch.zeros(6)
    g[0] = gn
    return c(t, torch.zeros(6), r, g)


def test_estimated_hit_uses_max_of_w0_and_wt_hessian_and_returns_its_step() -> None:
    c = _checker(lam=1.0, J=1.0, beta_h=0.2)
    thr = residual_threshold(1.0, 1.0, 0.2)
    step = _call(c, 4, rn=0.5 * thr.r_star, gn=1.0)
    assert c.hit is not None and c.hit.tier == "estimated" and c.hit.step == 4
    assert c.hit.beta == 0.2 and step == c.hit.step_size
    s = 1.0 - 0.2 * c.hit.rho
    assert c.hit.mu == pytest.approx(s * s)
    L = 1.0 + 0.2 * c.hit.rho
    assert c.hit.step_size == pytest.approx(1 / (L * L + 0.2 * 0.5 * thr.r_star))
    assert c.hit.radius == pytest.approx(2 * L * 0.5 * thr.r_star / c.hit.mu)
    assert c.hit.radius <= c.hit.rho  # the theorem's radius fits the ball the beta holds on


def test_no_hit_above_threshold() -> None:
    c = _checker(lam=1.0, J=1.0, beta_h=0.2)
    thr = residual_threshold(1.0, 1.0, 0.2)
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
