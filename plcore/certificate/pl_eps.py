"""PL*_eps: the smallest loss GD provably reaches when exact interpolation cannot be certified
(THEORY.md section 7; Liu, Zhu & Belkin (2022), "almost over-parameterized systems, PL*_eps").

On B(w0, rho) with rho < sqrt(lambda0) / beta the bounds of THEORY.md section 4 give PL* with
mu(rho) = (sqrt(lambda0) - beta rho)^2 and L_F(rho) = ||J0|| + beta rho. GD with
eta = 1 / (L_F^2 + beta ||r0||) contracts the loss by q = 1 - eta mu per step AS LONG AS it stays in
the ball. Step t moves w by eta ||J^T r_t|| <= eta L_F ||r0|| q^{t/2}, so after T steps

    ||w_T - w0|| <= D_T = eta L_F ||r0|| (1 - q^{T/2}) / (1 - q^{1/2}).

Hence, while D_T <= rho, every iterate and segment up to step T lies in the ball and
L(w_T) <= q^T L0. The largest such T is

    T(rho) = floor( ln(1 - x) / ln(q^{1/2}) ),   x = rho (1 - q^{1/2}) / (eta L_F ||r0||),

(T = infinity when x >= 1: then the exact certificate closes, since 1 - q^{1/2} >= eta mu / 2 makes
x >= 1 whenever R = 2 L_F ||r0|| / mu <= rho), and eps(rho) = q^{T(rho)} L0: PL* holds on the
sublevel path down to eps. This module minimises eps(rho) over a grid of rho in
(0, min(sqrt(lambda0) / beta, rho_cap)], where rho_cap is the radius of the ball that the proven
beta was computed on (a beta bound says nothing about larger balls).

When x >= 1 at some rho, the path-length bound itself keeps every iterate in B(w0, rho) for ever:
that is a certificate of exact interpolation (``closes``), with total distance
D = eta L_F ||r0|| / (1 - q^{1/2}) <= rho; it can close where R(rho) = 2 L_F ||r0|| / mu <= rho
fails (1 - q^{1/2} >= eta mu / 2 is only a bound), and the verdict uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from plcore.certificate._json import finite_or_none
from plcore.certificate.predict_gd import safe_step
from plcore.certificate.radius import PROVEN_SLACK, Closure
from plcore.report.schema import PLEps, Tier


@dataclass(frozen=True)
class PLEpsResult:
    """eps(rho) minimised over rho.

    Attributes:
        closes: some rho gives T = infinity (exact interpolation is certified instead).
        eps: q^T L0 at the best rho (0.0 when ``closes``), None when no rho gives mu > 0.
        iterations: T, the steps that reach ``eps`` (None when ``closes`` or no rho).
        rho, step, rate, mu: the ball and the GD constants that give it.
        L_F: ||J0|| + beta rho on that ball.
        distance: when ``closes``, the path-length bound eta L_F ||r0|| / (1 - sqrt(rate)) <= rho.
    """

    closes: bool
    eps: float | None
    iterations: int | None
    rho: float | None
    step: float | None
    rate: float | None
    mu: float | None
    L_F: float | None = None
    distance: float | None = None


def _at(
    lambda0: float, jac_norm: float, r0: float, beta: float, rho: float
) -> tuple[float, int | None, float, float]:
    s = math.sqrt(lambda0) - beta * rho
    L = jac_norm + beta * rho
    mu = s * s
    eta = safe_step(L, beta, r0)
    q = max(1.0 - eta * mu, 0.0)
    sq = math.sqrt(q)
    x = rho * (1.0 - sq) / (eta * L * r0)
    if x >= 1.0 or sq == 0.0:
        return eta, None, q, mu
    T = math.floor(math.log1p(-x) / math.log(sq)) if sq < 1.0 else 0
    return eta, T, q, mu


def pl_eps(
    *,
    lambda0: float,
    jac_norm: float,
    residual_norm: float,
    loss0: float,
    beta: float,
    n_grid: int = 400,
    rho_cap: float = math.inf,
) -> PLEpsResult:
    """The smallest certified loss level eps over rho in (0, min(sqrt(lambda0) / beta, rho_cap)]
    (see module docstring). ``beta`` is a bound (proven tier) or an estimate (estimated tier) of
    beta_F; ``rho_cap`` the radius of the ball it holds on."""
    if not (lambda0 > 0 and residual_norm > 0):
        return PLEpsResult(
            residual_norm == 0, 0.0 if residual_norm == 0 else None, None, None, None, None, None
        )
    if beta <= 0:
        # F is linear on every ball: the certificate closes for rho >= R.
        return PLEpsResult(True, 0.0, None, None, None, None, lambda0)
    rho_max = math.sqrt(lambda0) / beta
    last = n_grid - 1
    if rho_cap < rho_max:  # the closed ball B(w0, rho_cap) is where beta holds: include it
        rho_max, last = rho_cap, n_grid
    best: PLEpsResult | None = None
    for k in range(1, last + 1):
        rho = rho_max * k / n_grid
        eta, T, q, mu = _at(lambda0, jac_norm, residual_norm, beta, rho)
        if T is None:
            L = jac_norm + beta * rho
            sq = math.sqrt(q)
            dist = eta * L * residual_norm / (1.0 - sq) if sq < 1.0 else math.inf
            return PLEpsResult(True, 0.0, None, rho, eta, q, mu, L, dist)
        eps = loss0 * q**T
        if best is None or best.eps is None or eps < best.eps:
            best = PLEpsResult(False, eps, T, rho, eta, q, mu)
    assert best is not None
    return best


def pl_eps_section(
    lam0: float,
    J0: float,
    r0n: float,
    L0: float,
    beta: float,
    kind: str,
    beta_estimated: float | None = None,
    rho_cap: float = math.inf,
) -> tuple[PLEps, PLEpsResult]:
    """The report's ``pl_eps`` with the beta behind r* (``kind`` "proven" or "estimated"). When a
    proven beta certifies no step at all (T = 0), the estimated beta is used instead and the
    section says so (tier estimated). ``rho_cap``: the ball the proven beta holds on (the scan
    stays inside it). Returns the section and the raw result (for a closure)."""
    cap = rho_cap if kind == "proven" else math.inf
    res = pl_eps(lambda0=lam0, jac_norm=J0, residual_norm=r0n, loss0=L0, beta=beta, rho_cap=cap)
    note = ""
    if kind == "proven" and res.iterations == 0 and beta_estimated is not None:
        res = pl_eps(lambda0=lam0, jac_norm=J0, residual_norm=r0n, loss0=L0, beta=beta_estimated)
        note = f" (the proven beta_F = {beta:.4g} certifies no step: estimated beta used)"
        kind, beta, cap = "estimated", beta_estimated, math.inf
    section = PLEps(
        eps=finite_or_none(res.eps) if res.eps is not None else None,
        iterations=res.iterations,
        method=(
            "smallest q^T L0 over balls B(w0, rho), rho < sqrt(lambda0)/beta"
            + (
                f" and rho <= {cap:.4g} (the ball the proven beta holds on)"
                if cap < math.inf
                else ""
            )
            + ", such that the "
            f"GD path-length bound keeps T steps inside the ball ({kind} beta_F = {beta:.4g}; "
            f"docs/theory.md, PL*_eps){note}"
        ),
        tier="rigorous" if kind == "proven" else "estimated",
        radius=res.rho,
        step_size=res.step,
        rate=res.rate,
        mu=res.mu,
        closes=res.closes,
        radius_cap=finite_or_none(cap),
    )
    return section, res


def eps_closure(eps: PLEps, res: PLEpsResult, beta_star: float, beta_est: float) -> Closure | None:
    """The PL*_eps path-length closure as a closure at w0 (eps = 0 certified; module docstring),
    or None. The distance bound must fit the ball with the slack of the proven tier."""
    if not res.closes or res.rho is None or res.mu is None or res.L_F is None:
        return None
    if res.distance is None or not res.distance <= res.rho * (1.0 - PROVEN_SLACK):
        return None
    tier: Tier = "rigorous" if eps.tier == "rigorous" else "estimated"
    beta = beta_star if tier == "rigorous" else beta_est
    return Closure(tier, "PL*_eps path length", res.rho, res.L_F, beta, res.mu, res.distance)
