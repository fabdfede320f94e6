"""The radius search: proven tier first, estimated tiers, and the no-closure choice."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from plcore.certificate.radius import (
    ProvenBeta,
    bound_form,
    cannot_close,
    radius_grid,
    required_radius,
    search_radius,
    threshold_within,
)
from plcore.estimate.bounds import residual_threshold


@dataclass(frozen=True)
class FakeProbe:
    L_F_lower: float
    beta_F_lower: float
    mu_upper: float


def _no_proof(rho: float) -> ProvenBeta | None:
    return None


def test_grid_starts_above_the_radius_needed_at_w0() -> None:
    grid = radius_grid(4.0, 3.0, 2.0, 0.0, 3, 2.0)
    assert grid == pytest.approx((6.0, 12.0, 24.0))
    assert radius_grid(0.0, 3.0, 2.0, 0.0, 3, 2.0) == ()


def test_grid_ends_where_the_hessian_at_w0_makes_k_singular() -> None:
    # R(0) = 2 * 1 * 0.01 / 1 = 0.02; rho_max = sqrt(1) / 0.5 = 2
    grid = radius_grid(1.0, 1.0, 0.01, 0.5, 2, 2.0)
    assert grid == pytest.approx((0.2, 2.0))
    assert radius_grid(1.0, 1.0, 10.0, 0.5, 4, 2.0) == ()


def test_bound_form_is_weyl() -> None:
    assert bound_form(4.0, 3.0, 0.5, 1.0) == pytest.approx((3.5, 2.25))
    assert bound_form(4.0, 3.0, 0.5, 5.0)[1] == 0.0


def test_proven_zero_beta_closes_rigorously_with_exact_constants() -> None:
    lam, J, r = 2.0, 3.0, 1.0
    probes: list[float] = []

    def probe(rho: float) -> FakeProbe:
        probes.append(rho)
        return FakeProbe(J, 0.0, lam)

    res = search_radius(
        lambda0=lam,
        jac_norm=J,
        residual_norm=r,
        hessian_norm0=0.0,
        grid=radius_grid(lam, J, r, 0.0, 4, 2.0),
        proven_beta=lambda rho: ProvenBeta(0.0, None, "t"),
        probe=probe,
    )
    c = res.closure
    assert c.tier == "rigorous" and c.form == "proven bounds"
    assert c.mu == pytest.approx(lam, rel=1e-15) and c.L == J and c.beta == 0.0
    assert pytest.approx(required_radius(J, r, lam)) == c.R
    assert probes == [c.rho]  # only the chosen ball is probed


def test_estimated_tier_when_no_proof_and_probes_close() -> None:
    res = search_radius(
        lambda0=1.0,
        jac_norm=1.0,
        residual_norm=0.01,
        hessian_norm0=0.1,
        grid=radius_grid(1.0, 1.0, 0.01, 0.0, 6, 2.0),
        proven_beta=_no_proof,
        probe=lambda rho: FakeProbe(1.0, 0.1, 0.99),
    )
    assert res.closure.tier == "estimated"
    assert res.closure.form == "bounds with estimated beta"
    assert res.closure.R is not None and res.closure.rho >= res.closure.R


def test_probe_estimates_close_when_bound_form_cannot() -> None:
    # the bound form with beta = 10 needs ||r0|| <= r* ~ 0.0074; the probed mu stays at lambda0
    assert residual_threshold(1.0, 1.0, 10.0).r_star < 0.01
    res = search_radius(
        lambda0=1.0,
        jac_norm=1.0,
        residual_norm=0.01,
        hessian_norm0=10.0,
        grid=radius_grid(1.0, 1.0, 0.01, 10.0, 6, 2.0),
        proven_beta=_no_proof,
        probe=lambda rho: FakeProbe(1.0, 10.0, 1.0),
    )
    assert res.closure.tier == "estimated" and res.closure.form == "probe estimates"


def test_probe_estimates_not_trusted_beyond_the_hessian_radius() -> None:
    res = search_radius(
        lambda0=1.0,
        jac_norm=1.0,
        residual_norm=0.01,
        hessian_norm0=1e3,
        grid=radius_grid(1.0, 1.0, 0.01, 0.0, 6, 2.0),
        proven_beta=_no_proof,
        probe=lambda rho: FakeProbe(1.0, 1e3, 1.0),
    )
    assert not res.closure.closes


def test_no_closure_picks_smallest_ratio_and_stops_early() -> None:
    seen: list[float] = []

    def probe(rho: float) -> FakeProbe:
        seen.append(rho)
        return FakeProbe(1.0 + rho, 10.0, 1.0 / (1.0 + rho) ** 2)

    grid = radius_grid(1.0, 1.0, 5.0, 0.0, 10, 2.0)
    res = search_radius(
        lambda0=1.0,
        jac_norm=1.0,
        residual_norm=5.0,
        hessian_norm0=10.0,
        grid=grid,
        proven_beta=_no_proof,
        probe=probe,
    )
    assert not res.closure.closes and res.closure.tier is None
    assert len(seen) < len(grid)
    ratios = [
        required_radius(1.0 + b.rho, 5.0, 1.0 / (1.0 + b.rho) ** 2) / b.rho for b in res.balls
    ]
    assert res.chosen.rho == res.balls[ratios.index(min(ratios))].rho


def test_threshold_within_clips_to_the_valid_ball() -> None:
    thr = residual_threshold(1.0, 2.0, 0.5)
    assert threshold_within(1.0, 2.0, 0.5, math.inf) == thr.r_star
    assert threshold_within(1.0, 2.0, 0.5, thr.rho_star / 2) < thr.r_star


def test_empty_grid_is_refused_without_fallback() -> None:
    with pytest.raises(ValueError, match="grid is empty"):
        search_radius(
            lambda0=1.0,
            jac_norm=1.0,
            residual_norm=1.0,
            hessian_norm0=0.0,
            grid=(),
            proven_beta=_no_proof,
            probe=lambda rho: FakeProbe(1, 0, 1),
        )


def test_empty_grid_probes_only_the_fallback_ball() -> None:
    seen: list[float] = []

    def probe(rho: float) -> FakeProbe:
        seen.append(rho)
        return FakeProbe(1.0, 1.0, 1.0)

    res = search_radius(
        lambda0=1.0,
        jac_norm=1.0,
        residual_norm=1.0,
        hessian_norm0=1.0,
        grid=(),
        proven_beta=_no_proof,
        probe=probe,
        fallback_rho=0.3,
    )
    assert seen == [0.3] and not res.closure.closes and res.chosen.rho == 0.3


@dataclass(frozen=True)
class Rec:
    distance: float


@dataclass(frozen=True)
class CentreOnlyProbe(FakeProbe):
    records: tuple[Rec, ...] = (Rec(0.0),)


def test_probe_estimates_do_not_count_when_no_probe_left_the_centre() -> None:
    res = search_radius(
        lambda0=1.0,
        jac_norm=1.0,
        residual_norm=0.01,
        hessian_norm0=1e3,
        grid=radius_grid(1.0, 1.0, 0.01, 0.0, 4, 2.0),
        proven_beta=_no_proof,
        probe=lambda rho: CentreOnlyProbe(1.0, 1e3, 1.0),
    )
    assert not res.closure.closes


def test_closed_form_closing_radius_catches_an_interval_between_grid_points() -> None:
    # constant proven beta: the bound form closes only on a narrow interval around rho*
    lam, J, beta = 1.0, 1.0, 1.0
    thr = residual_threshold(lam, J, beta)
    r = thr.r_star * (1 - 1e-4)
    lo, hi = thr.rho_star * 0.98, thr.rho_star * 1.02
    grid = (thr.rho_star * 0.5, thr.rho_star * 1.5)  # steps over [lo, hi]
    for rho in grid:
        L, mu = bound_form(lam, J, beta, rho)
        assert required_radius(L, r, mu) > rho  # the grid alone never closes
    res = search_radius(
        lambda0=lam,
        jac_norm=J,
        residual_norm=r,
        hessian_norm0=beta,
        grid=grid,
        proven_beta=lambda rho: ProvenBeta(beta, None, "constant"),
        probe=lambda rho: FakeProbe(J, beta, lam),
    )
    assert res.closure.tier == "rigorous"
    assert lo < res.closure.rho < hi and res.closure.rho <= grid[1]
    assert res.closure.R is not None and res.closure.rho >= res.closure.R


def test_proven_closure_uses_the_floating_point_inputs() -> None:
    # closes with the eigvalsh values, but not with a lower bound of lambda0 that is 10x smaller
    lam, J, r = 1.0, 1.0, 0.01
    kwargs = dict(
        lambda0=lam,
        jac_norm=J,
        residual_norm=r,
        hessian_norm0=0.0,
        grid=(0.05, 0.1),
        proven_beta=lambda rho: ProvenBeta(0.0, None, "zero"),
        probe=lambda rho: FakeProbe(J, 0.0, lam),
    )
    assert search_radius(**kwargs).closure.tier == "rigorous"  # type: ignore[arg-type]
    res = search_radius(**kwargs, proven_inputs=(0.1, J, r))  # type: ignore[arg-type]
    assert res.closure.tier == "estimated"  # R = 2 * 1 * 0.01 / 0.1 = 0.2 > 0.1


def test_direct_proven_closure_solves_for_the_closing_radius_within_the_valid_ball() -> None:
    from plcore.certificate.radius import proven_closure

    lam, J, beta = 1.0, 1.0, 1.0
    thr = residual_threshold(lam, J, beta)
    pb = ProvenBeta(beta, None, "constant")
    r = thr.r_star * 0.999
    c = proven_closure(lam, J, r, pb, rho_cap=thr.rho_star * 2)
    assert c is not None and c.tier == "rigorous" and c.rho <= thr.rho_star * 2
    L, mu = bound_form(lam, J, beta, c.rho)
    radius = c.R
    assert radius is not None and c.rho >= radius
    assert radius == pytest.approx(required_radius(L, r, mu))
    assert proven_closure(lam, J, r, pb, rho_cap=thr.rho_star * 0.5) is None  # beyond the ball
    assert proven_closure(lam, J, thr.r_star * 1.001, pb, rho_cap=10.0) is None  # above r*


@pytest.mark.parametrize(
    ("L", "beta", "mu", "settled"),
    [
        (1.0, 0.0, 1.0, False),  # both forms close: keep probing (a new point may break it)
        (1.0, 2.0, 0.2, True),  # neither form closes: no further point can change that
        (5.0, 0.0, 1.0, False),  # the bound form with beta0 still closes
    ],
)
def test_cannot_close_is_true_exactly_when_neither_estimated_form_closes(
    L: float, beta: float, mu: float, settled: bool
) -> None:
    lam, J, r, h0, rho = 1.0, 1.0, 0.04, 0.0, 0.1
    rule = cannot_close(lam, J, r, h0, rho)
    beta_est = max(h0, beta)
    L_eb, mu_eb = bound_form(lam, J, beta_est, rho)
    closes_eb = required_radius(L_eb, r, mu_eb) <= rho
    closes_raw = rho * beta_est <= 1.0 and required_radius(max(J, L), r, min(lam, mu)) <= rho
    assert rule(L, beta, mu) == settled == (not closes_eb and not closes_raw)


def test_probing_until_settled_gives_the_same_closure_as_full_probes() -> None:
    lam, J, r = 1.0, 1.0, 0.05
    grid = radius_grid(lam, J, r, 0.1, 6, 2.0)

    def full(rho: float) -> FakeProbe:
        return FakeProbe(J + rho, 0.1 + rho, lam - 2 * rho)

    stops: list[float] = []

    def until(rho: float, stop: Callable[[float, float, float], bool]) -> FakeProbe:
        p = full(rho)
        if stop(p.L_F_lower, p.beta_F_lower, p.mu_upper):
            stops.append(rho)
        return p

    kw = dict(lambda0=lam, jac_norm=J, residual_norm=r, hessian_norm0=0.1, grid=grid)
    a = search_radius(**kw, proven_beta=_no_proof, probe=full)  # type: ignore[arg-type]
    b = search_radius(**kw, proven_beta=_no_proof, probe=full, probe_until=until)  # type: ignore[arg-type]
    assert a.closure == b.closure and a.closure.closes
    assert a.closure.rho not in stops  # the closing ball was never declared settled
