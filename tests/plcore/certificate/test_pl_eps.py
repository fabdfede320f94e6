"""PL*_eps: the certified loss level, checked on a 1-D problem with a known Hessian bound."""

from __future__ import annotations

import math

import pytest

from plcore.certificate.pl_eps import pl_eps


def test_linear_model_closes_exactly() -> None:
    res = pl_eps(lambda0=1.0, jac_norm=2.0, residual_norm=5.0, loss0=12.5, beta=0.0)
    assert res.closes and res.eps == 0.0


def test_no_ball_without_conditioning() -> None:
    res = pl_eps(lambda0=0.0, jac_norm=1.0, residual_norm=1.0, loss0=0.5, beta=1.0)
    assert not res.closes and res.eps is None


def test_small_residual_closes_and_large_residual_gives_positive_eps() -> None:
    small = pl_eps(lambda0=1.0, jac_norm=1.0, residual_norm=1e-3, loss0=0.5e-6, beta=1.0)
    assert small.closes
    big = pl_eps(lambda0=1.0, jac_norm=1.0, residual_norm=0.5, loss0=0.125, beta=1.0)
    assert not big.closes
    assert big.eps is not None and 0 < big.eps < 0.125
    assert big.iterations is not None and big.iterations >= 1
    # a first step longer than any PL* ball: nothing below L0 is certified
    huge = pl_eps(lambda0=1.0, jac_norm=1.0, residual_norm=10.0, loss0=50.0, beta=1.0)
    assert huge.eps == 50.0 and huge.iterations == 0


@pytest.mark.parametrize("target", [3.0, 6.0])
def test_gd_on_quadratic_map_reaches_eps_inside_the_ball(target: float) -> None:
    # F(w) = w + (b/2) w^2 on R: J = 1 + b w, Hess F = b everywhere, so beta = b exactly.
    b = 0.4
    res = pl_eps(lambda0=1.0, jac_norm=1.0, residual_norm=target, loss0=target**2 / 2, beta=b)
    assert not res.closes and res.eps is not None and res.iterations is not None
    assert res.step is not None and res.rho is not None and res.rate is not None
    w = 0.0
    for t in range(res.iterations + 1):
        r = w + b * w * w / 2 - target
        loss = r * r / 2
        assert abs(w) <= res.rho + 1e-12
        assert loss <= res.rate**t * target**2 / 2 * (1 + 1e-12)
        w -= res.step * (1 + b * w) * r
    final = w + b * w * w / 2 - target
    assert (final * final / 2) <= res.eps * (1 + 1e-9) or math.isclose(final, 0.0)


def test_scan_stays_inside_the_ball_of_the_proven_beta() -> None:
    free = pl_eps(lambda0=1.0, jac_norm=1.0, residual_norm=0.5, loss0=0.125, beta=1.0)
    capped = pl_eps(
        lambda0=1.0, jac_norm=1.0, residual_norm=0.5, loss0=0.125, beta=1.0, rho_cap=0.05
    )
    assert free.rho is not None and free.rho > 0.05
    assert capped.rho is not None and capped.rho <= 0.05
    assert capped.eps is not None and free.eps is not None and capped.eps >= free.eps


def test_path_length_closure_beyond_the_r_star_threshold_is_replayed_by_gd() -> None:
    # ||r0|| above r* (R(rho) <= rho fails on every ball), yet the path-length bound closes
    from plcore.estimate.bounds import residual_threshold

    b = 1.0
    target = residual_threshold(1.0, 1.0, b).r_star * 1.05
    res = pl_eps(lambda0=1.0, jac_norm=1.0, residual_norm=target, loss0=target**2 / 2, beta=b)
    assert res.closes and res.distance is not None and res.rho is not None
    assert res.distance <= res.rho and res.step is not None and res.rate is not None
    # F(w) = w + (b/2) w^2: J(0) = 1, Hess F = b; GD with the certified step stays in the ball
    w = 0.0
    for t in range(200):
        r = w + b * w * w / 2 - target
        assert abs(w) <= res.distance + 1e-12
        assert r * r / 2 <= res.rate**t * target**2 / 2 * (1 + 1e-12) + 1e-30
        w -= res.step * (1 + b * w) * r


def test_path_length_closure_becomes_a_rigorous_closure_with_the_proven_beta() -> None:
    from plcore.certificate.pl_eps import eps_closure, pl_eps_section
    from plcore.estimate.bounds import residual_threshold

    r0 = residual_threshold(1.0, 1.0, 1.0).r_star * 1.05  # above r*: the search cannot close
    section, res = pl_eps_section(1.0, 1.0, r0, r0 * r0 / 2, 1.0, "proven", 0.5, rho_cap=1.0)
    assert section.closes and section.eps == 0.0 and section.tier == "rigorous"
    c = eps_closure(section, res, 1.0, 0.5)
    assert c is not None and c.tier == "rigorous" and c.form == "PL*_eps path length"
    assert c.R is not None and c.rho >= c.R and c.beta == 1.0
    # capped below the closing radius, the same beta closes nothing
    capped, res2 = pl_eps_section(1.0, 1.0, r0, r0 * r0 / 2, 1.0, "proven", None, rho_cap=0.05)
    assert not capped.closes and eps_closure(capped, res2, 1.0, 0.5) is None
    # ... and with an estimated beta to fall back on, the closure is estimated, never rigorous
    est, res3 = pl_eps_section(1.0, 1.0, r0, r0 * r0 / 2, 1.0, "proven", 0.5, rho_cap=0.05)
    c3 = eps_closure(est, res3, 1.0, 0.5)
    assert est.tier == "estimated" and (c3 is None or c3.tier == "estimated")
    assert capped.radius is not None and capped.radius <= 0.05
