"""The radius search of the local PL* theorem (THEORY.md section 3; Liu, Zhu & Belkin (2022),
"the local PL* theorem for GD", with the perturbation constants of THEORY.md section 4).

The theorem needs constants (L_F, beta_F, mu) on a ball B(w0, rho) with

    R(rho) = 2 L_F(rho) ||r0|| / mu(rho) <= rho.

R(rho) only grows with rho (sups grow, infs shrink), and R(rho) >= R(0) = 2 ||J0|| ||r0|| / lambda0,
so the radii tried form the geometric grid rho_k = R(0) * g^k, k = 1..G. For each rho the
constants come as brackets (THEORY.md section 8):

* proven (only with an analytic bound beta_ub on B(w0, rho)): L_F <= ||J0|| + beta_ub rho (or the
  analytic Jacobian bound if smaller), mu >= (sqrt(lambda0) - beta_ub rho)^2 (Weyl, section 4);
* estimated: the extreme values over the probe points (a lower estimate of each sup and an upper
  estimate of the inf), and the bound form of section 4 with the ESTIMATED beta.

The rigorous tier closes when R(rho) <= rho with the proven constants; the estimated tier when it
closes with the estimates: the bound form with the estimated beta first (the more cautious), then
the raw probe extremes, but only on balls that the probes reached the boundary of and where the
estimated Hessian alone cannot make K singular (rho <= sqrt(lambda0) / beta_est).
The smallest closing rho is taken: it gives the best constants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from plcore.estimate.bounds import certificate_gap, closing_radius, residual_threshold
from plcore.progress import Progress

Tier = Literal["rigorous", "estimated"]
ClosureForm = Literal[
    "proven bounds", "bounds with estimated beta", "probe estimates", "PL*_eps path length"
]


class ProbeLike(Protocol):
    """What the search reads from :class:`plcore.estimate.probes.BallProbe`."""

    @property
    def L_F_lower(self) -> float: ...
    @property
    def beta_F_lower(self) -> float: ...
    @property
    def mu_upper(self) -> float: ...


@dataclass(frozen=True)
class ProvenBeta:
    """An analytic (proven) bound on B(w0, rho): beta_F <= beta, sup ||J|| <= jacobian (or None)."""

    beta: float
    jacobian: float | None
    method: str


@dataclass(frozen=True)
class BallConstants:
    """Brackets of the constants on one ball B(w0, rho).

    ``*_est`` are probe estimates (L, beta: max seen; mu: min seen), ``*_ub`` / ``mu_lb`` proven
    bounds (None without an analytic bound), ``L_eb`` / ``mu_eb`` the bound form of THEORY.md
    section 4 evaluated with the estimated beta.
    """

    rho: float
    L_est: float | None = None
    beta_est: float | None = None
    mu_est: float | None = None
    L_ub: float | None = None
    beta_ub: float | None = None
    mu_lb: float | None = None
    L_eb: float | None = None
    mu_eb: float | None = None
    proven_method: str = ""
    probe: object | None = None


@dataclass(frozen=True)
class Closure:
    """The constants a verdict rests on and whether R(rho) <= rho with them.

    ``tier`` is None when nothing closed; the constants are then the estimates of the ball with
    the smallest ratio R / rho, for predictions labelled as such.
    """

    tier: Tier | None
    form: ClosureForm
    rho: float
    L: float
    beta: float
    mu: float
    R: float | None

    @property
    def closes(self) -> bool:
        return self.tier is not None


@dataclass(frozen=True)
class RadiusSearch:
    """Result of :func:`search_radius`: every ball looked at, the chosen one and its closure."""

    grid: tuple[float, ...]
    balls: tuple[BallConstants, ...]
    chosen: BallConstants
    closure: Closure


def required_radius(L: float, residual_norm: float, mu: float) -> float:
    """R = 2 L_F ||r|| / mu (THEORY.md section 3); inf when mu <= 0."""
    return 2.0 * L * residual_norm / mu if mu > 0 else math.inf


def bound_form(lambda0: float, jac_norm: float, beta: float, rho: float) -> tuple[float, float]:
    """(L_F, mu) on B(w0, rho) from beta alone (THEORY.md section 4, Weyl's inequality):
    L_F <= ||J0|| + beta rho and mu >= max(sqrt(lambda0) - beta rho, 0)^2."""
    s = math.sqrt(max(lambda0, 0.0)) - beta * rho
    return jac_norm + beta * rho, (s * s if s > 0 else 0.0)


def radius_grid(
    lambda0: float,
    jac_norm: float,
    residual_norm: float,
    beta0: float,
    size: int,
    growth: float,
) -> tuple[float, ...]:
    """The radii worth trying, geometric on (R(0), rho_max].

    No rho below R(0) = 2 ||J0|| ||r0|| / lambda0 can close (L_F(rho) >= ||J0||, mu(rho) <=
    lambda0). With beta0 = ||H_F(w0)|| > 0 no rho at or above rho_max = sqrt(lambda0) / beta0 can
    close in any tier: every beta used (proven or estimated) is >= beta0, the bound forms have
    mu = 0 there, and raw probe extremes are only trusted below sqrt(lambda0) / beta_est. So the
    grid is rho_k = R(0) (rho_max / R(0))^(k / size), k = 1..size, empty when R(0) >= rho_max;
    for beta0 = 0 it is R(0) g^k.
    """
    R0 = required_radius(jac_norm, residual_norm, lambda0)
    if not math.isfinite(R0) or R0 <= 0:
        return ()
    if beta0 > 0:
        rho_max = math.sqrt(lambda0) / beta0
        if rho_max <= R0:
            return ()
        ratio = (rho_max / R0) ** (1.0 / size)
        return tuple(R0 * ratio**k for k in range(1, size + 1))
    return tuple(R0 * growth**k for k in range(1, size + 1))


def _proven(lambda0: float, jac_norm: float, rho: float, pb: ProvenBeta) -> BallConstants:
    L_ub, mu_lb = bound_form(lambda0, jac_norm, pb.beta, rho)
    if pb.jacobian is not None:
        L_ub = min(L_ub, pb.jacobian)
    return BallConstants(rho=rho, L_ub=L_ub, beta_ub=pb.beta, mu_lb=mu_lb, proven_method=pb.method)


def _closes(L: float | None, mu: float | None, residual_norm: float, rho: float) -> bool:
    return L is not None and mu is not None and required_radius(L, residual_norm, mu) <= rho


#: relative slack of the proven inequality R(rho) <= rho (1 - PROVEN_SLACK): covers the rounding
#: of the few dozen float64 operations behind R and mu (docs/theory.md, section 15)
PROVEN_SLACK = 1e-9


def closes_proven(L: float | None, mu: float | None, residual_norm: float, rho: float) -> bool:
    """R(rho) <= rho (1 - 1e-9), and sqrt(mu) >= 1e-4 L_F >= 1e-4 sqrt(lambda0), so that the
    subtraction sqrt(lambda0) - beta rho behind mu lost at most 4 of 16 digits."""
    if L is None or mu is None or not (mu > 0 and mu >= 1e-8 * L * L):
        return False
    return required_radius(L, residual_norm, mu) <= rho * (1.0 - PROVEN_SLACK)


def _covers(probe: object, rho: float) -> bool:
    """The probes reached the boundary of the ball (a record at distance >= 0.99 rho): raw probe
    extremes certify nothing about a ball they never left the centre of."""
    records = getattr(probe, "records", None)
    if records is None:
        return True
    return any(float(r.distance) >= 0.99 * rho for r in records)


StopRule = Callable[[float, float, float], bool]


def cannot_close(
    lambda0: float, jac_norm: float, residual_norm: float, hessian_norm0: float, rho: float
) -> StopRule:
    """The stop rule of the probes of B(w0, rho) in the estimated tier: given the extremes seen
    so far (L_F_lower, beta_F_lower, mu_upper), True when neither estimated form closes.

    More points only raise L and beta and lower mu, and both forms' R(rho) grow with L and beta
    and fall with mu, so once neither closes no further point can make the ball close: its
    outcome is settled and probing stops. (A ball that closes is always probed to the end.)
    """

    def rule(L: float, beta: float, mu: float) -> bool:
        beta_est = max(hessian_norm0, beta)
        L_eb, mu_eb = bound_form(lambda0, jac_norm, beta_est, rho)
        if _closes(L_eb, mu_eb, residual_norm, rho):
            return False
        trusted = rho * beta_est <= math.sqrt(lambda0)
        return not (trusted and _closes(max(jac_norm, L), min(lambda0, mu), residual_norm, rho))

    return rule


def search_radius(
    *,
    lambda0: float,
    jac_norm: float,
    residual_norm: float,
    hessian_norm0: float,
    grid: Sequence[float],
    proven_beta: Callable[[float], ProvenBeta | None],
    probe: Callable[[float], ProbeLike],
    fallback_rho: float | None = None,
    progress: Progress | None = None,
    proven_inputs: tuple[float, float, float] | None = None,
    probe_until: Callable[[float, StopRule], ProbeLike] | None = None,
) -> RadiusSearch:
    """Search the grid for the smallest rho with R(rho) <= rho.

    Args:
        lambda0, jac_norm, residual_norm: lambda_min(K(w0)) > 0, ||J0||_2, ||r0|| (exact).
        hessian_norm0: ||H_F(w0)||, always part of the beta estimate.
        grid: increasing radii (see :func:`radius_grid`); when empty, nothing can close and only
            the ball of radius ``fallback_rho`` is probed (for the report's brackets).
        proven_beta: rho -> analytic bound on B(w0, rho), or None where none is known.
        probe: rho -> probes of B(w0, rho) (lower estimates of L_F, beta_F; upper of mu).
        proven_inputs: (lambda0 lower bound, ||J0|| upper bound, ||r0|| upper bound) that hold in
            floating point (docs/theory.md, section 15), used with the proven beta; None uses
            the three values above as they are.

    First the proven bounds are tried on the whole grid (cheap, no probes): at each rho_k the
    closing radius of the bound form with the proven beta of B(w0, rho_k) is solved in closed
    form (``closing_radius``), so a closing interval narrower than the grid step is not missed;
    it closes at rho_c <= rho_k (the beta of the larger ball holds on the smaller). Then balls are
    probed in increasing order until the estimates close, or the ratio R/rho grew twice in a row
    (R(rho) outgrows rho, no closure ahead). The chosen ball is always probed.

    ``probe_until(rho, stop)`` (optional) is used instead of ``probe`` for the balls of the
    estimated tier: it may end a ball's probing once ``stop`` (:func:`cannot_close`) says the
    ball cannot close. The ratio R/rho of such a ball is then computed from the points probed
    so far (an optimistic estimate); the ball probed for a rigorous closure, and every ball that
    closes, is probed in full.
    """
    if not grid:
        if fallback_rho is None or not fallback_rho > 0:
            raise ValueError("the radius grid is empty and there is no fallback radius")
        grid = (fallback_rho,)
        nothing_closes = True
    else:
        nothing_closes = False
    prog = progress or Progress()
    proven: dict[float, BallConstants] = {}
    rigorous_rho: float | None = None
    lam_p, J_p, r_p = proven_inputs or (lambda0, jac_norm, residual_norm)
    for rho in () if nothing_closes else grid:
        pb = proven_beta(rho)
        if pb is None:
            break
        proven[rho] = _proven(lam_p, J_p, rho, pb)
        if closes_proven(proven[rho].L_ub, proven[rho].mu_lb, r_p, rho):
            rigorous_rho = rho
            break
        rc = closing_radius(lam_p, J_p, pb.beta, r_p) if lam_p > 0 else None
        rc = None if rc is None else rc * (1.0 + 1e-6)  # off the root, for the slack
        if rc is not None and 0 < rc <= rho:
            inner = _proven(lam_p, J_p, rc, pb)
            if closes_proven(inner.L_ub, inner.mu_lb, r_p, rc):
                proven[rc] = inner
                rigorous_rho = rc
                break

    def probed(rho: float, settle: bool = False) -> BallConstants:
        if settle and probe_until is not None:
            p = probe_until(rho, cannot_close(lambda0, jac_norm, residual_norm, hessian_norm0, rho))
        else:
            p = probe(rho)
        beta_est = max(hessian_norm0, p.beta_F_lower)
        L_eb, mu_eb = bound_form(lambda0, jac_norm, beta_est, rho)
        base = proven.get(rho, BallConstants(rho=rho))
        return BallConstants(
            rho=rho,
            L_est=max(jac_norm, p.L_F_lower),
            beta_est=beta_est,
            mu_est=min(lambda0, p.mu_upper),
            L_ub=base.L_ub,
            beta_ub=base.beta_ub,
            mu_lb=base.mu_lb,
            L_eb=L_eb,
            mu_eb=mu_eb,
            proven_method=base.proven_method,
            probe=p,
        )

    if rigorous_rho is not None:
        prog.step(0.0, "probing ball")
        ball = probed(rigorous_rho)
        assert ball.L_ub is not None and ball.mu_lb is not None and ball.beta_ub is not None
        closure = Closure(
            "rigorous",
            "proven bounds",
            rigorous_rho,
            ball.L_ub,
            ball.beta_ub,
            ball.mu_lb,
            required_radius(ball.L_ub, r_p, ball.mu_lb),
        )
        return RadiusSearch(tuple(grid), (ball,), ball, closure)

    balls: list[BallConstants] = []
    ratios: list[float] = []
    for i, rho in enumerate(grid):
        prog.step(i / len(grid), "probing ball")
        ball = probed(rho, settle=not nothing_closes)
        balls.append(ball)
        assert ball.L_est is not None and ball.mu_est is not None and ball.beta_est is not None
        if nothing_closes:
            ratios.append(required_radius(ball.L_est, residual_norm, ball.mu_est) / rho)
            break
        if _closes(ball.L_eb, ball.mu_eb, residual_norm, rho):
            assert ball.L_eb is not None and ball.mu_eb is not None
            closure = Closure(
                "estimated",
                "bounds with estimated beta",
                rho,
                ball.L_eb,
                ball.beta_est,
                ball.mu_eb,
                required_radius(ball.L_eb, residual_norm, ball.mu_eb),
            )
            return RadiusSearch(tuple(grid), tuple(balls), ball, closure)
        trusted = rho * ball.beta_est <= math.sqrt(lambda0) and _covers(ball.probe, rho)
        if trusted and _closes(ball.L_est, ball.mu_est, residual_norm, rho):
            closure = Closure(
                "estimated",
                "probe estimates",
                rho,
                ball.L_est,
                ball.beta_est,
                ball.mu_est,
                required_radius(ball.L_est, residual_norm, ball.mu_est),
            )
            return RadiusSearch(tuple(grid), tuple(balls), ball, closure)
        ratios.append(required_radius(ball.L_est, residual_norm, ball.mu_est) / rho)
        if len(ratios) >= 3 and ratios[-1] > ratios[-2] > ratios[-3]:
            break
    best = min(range(len(balls)), key=lambda j: ratios[j])
    ball = balls[best]
    assert ball.L_est is not None and ball.mu_est is not None and ball.beta_est is not None
    R = required_radius(ball.L_est, residual_norm, ball.mu_est)
    closure = Closure(
        None,
        "probe estimates",
        ball.rho,
        ball.L_est,
        ball.beta_est,
        ball.mu_est,
        R if math.isfinite(R) else None,
    )
    return RadiusSearch(tuple(grid), tuple(balls), ball, closure)


def proven_closure(
    lambda0: float, jac_norm: float, residual_norm: float, pb: ProvenBeta, rho_cap: float
) -> Closure | None:
    """The rigorous closure at the closed-form closing radius rho_c of the bound form with a beta
    proven on B(w0, rho_cap), when rho_c <= rho_cap (then the constants hold on B(w0, rho_c)).
    Inputs are the floating-point bounds of docs/theory.md, section 15. This is the r* test of
    ``at_init`` turned into a certificate: ||r0|| <= r* within rho_cap iff rho_c exists."""
    if not lambda0 > 0:
        return None
    rc = closing_radius(lambda0, jac_norm, pb.beta, residual_norm)
    if rc is None or not rc > 0:
        return None
    rc *= 1.0 + 1e-6  # off the root, for the slack of closes_proven
    if rc > rho_cap:
        return None
    ball = _proven(lambda0, jac_norm, rc, pb)
    if not closes_proven(ball.L_ub, ball.mu_lb, residual_norm, rc):
        return None
    assert ball.L_ub is not None and ball.mu_lb is not None
    R = required_radius(ball.L_ub, residual_norm, ball.mu_lb)
    return Closure("rigorous", "proven bounds", rc, ball.L_ub, pb.beta, ball.mu_lb, R)


def threshold_within(lambda0: float, jac_norm: float, beta: float, rho_max: float) -> float:
    """r* = max over rho <= rho_max of rho (sqrt(lambda0) - beta rho)^2 / (2 (||J0|| + beta rho))
    (THEORY.md section 4), for a beta valid on B(w0, rho_max) only. g is unimodal, so the max
    is at min(rho*, rho_max)."""
    thr = residual_threshold(lambda0, jac_norm, beta)
    if thr.rho_star <= rho_max or not math.isfinite(thr.r_star):
        return thr.r_star
    return certificate_gap(rho_max, lambda0, jac_norm, beta)
