"""The path certificate: the local PL* theorem applied at an iterate w_t of the checking run
(THEORY.md section 3, last paragraph; docs/theory.md, sections 7 and 18).

The theorem holds from any starting point. With its sharper path-length form (docs/theory.md
section 18: under mu-PL* GD travels at most 2 ||r|| / sqrt(mu)) and the bound form of THEORY.md
section 4 around w_t (lambda_t = lambda_min(K(w_t)), J_t = ||J(w_t)||_2, beta >= beta_F on
B(w_t, rho)), its requirement at w_t reads

    ||r(w_t)|| <= r*(w_t) = max_rho rho (sqrt(lambda_t) - beta rho) / 2 = lambda_t / (8 beta).

The run from w0 to w_t is a finite computation that actually happened, so once the inequality holds
at some t*, GD from w_t* (with step <= 1 / (L_F^2 + beta ||r_t*||), L_F = J_t* + beta rho)
converges to zero loss at rate 1 - eta mu, mu = (sqrt(lambda_t*) - beta rho)^2, and stays in
B(w_t*, 2 ||r_t*|| / sqrt(mu)).

Checks are cheap first: ||grad L||^2 / ||r||^2 = r^T K r / ||r||^2 >= lambda_t gives an upper
bound of lambda_t for free, and ||H_F[u, u]|| (one forward-over-forward pass, u the gradient
direction) a lower bound of beta; r* computed from these is an UPPER bound of r*(w_t). When no
rigorous check is possible, the estimated check's own beta (>= the w0 estimate) gives a still
cheaper upper bound from the gradient alone, with no pass at all. Only when ||r_t|| is below it
does a full check (kernel eigenvalues, then beta) run; each kind runs at most once every
``every`` steps, full checks at most
``max_checks`` times.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from plcore.certificate._json import finite_or_none
from plcore.certificate.checking_run import RunRecord, bound_violations
from plcore.certificate.predict_gd import safe_step
from plcore.certificate.radius import PROVEN_SLACK, ProvenBeta
from plcore.estimate.bounds import path_gap, path_length_radius, path_residual_threshold
from plcore.estimate.psd import norm_upper
from plcore.estimate.rounding import residual_upper
from plcore.report.schema import PathCertificate, StepChange

Tier = str


@dataclass(frozen=True)
class PathHit:
    """Where and how the certificate closed along the run."""

    step: int
    tier: str
    residual_norm: float
    lambda_min: float
    jacobian_norm: float
    beta: float
    rho: float
    mu: float
    L_F: float
    radius: float
    step_size: float
    rate: float
    r_star: float
    beta_method: str


@dataclass
class PathChecker:
    """Hook for :func:`plcore.certificate.checking_run.gd_run` (see module docstring).

    Attributes:
        spectrum_at: w -> (lambda_min(K(w)), ||J(w)||_2), estimates (eigvalsh or Lanczos).
        beta_estimate: estimated beta_F from w0 (max Hessian norm over w0 and the probes).
        hessian_norm_at: w -> ||H_F(w)|| (power method, a lower estimate).
        second_directional_norm: (w, u) -> ||H_F(w)[u, u]|| (a cheap lower bound of ||H_F(w)||).
        proven_beta_at: (w, rho) -> analytic bound on B(w, rho), or None (no proven tier).
        certified_spectrum_at: w -> (lower bound of lambda_min(K(w)), upper bound of ||J(w)||,
            E_F >= ||F_computed(w) - F(w)|| or None) that hold in floating point for the exact
            model (docs/theory.md, section 15); None: no rigorous tier.
        run_step: the step the run uses now; a hit whose certified step is larger keeps it (the
            theorem holds for every eta <= 1 / (L_F^2 + beta ||r||), at rate 1 - eta mu).
        rigorous_only: look for rigorous closures only (the certificate closed at w0 with
            estimates already).
        estimated_hit: an estimated closure that a later rigorous one replaced (``hit``).
    """

    spectrum_at: Callable[[Tensor], tuple[float, float]]
    beta_estimate: float
    hessian_norm_at: Callable[[Tensor], float]
    second_directional_norm: Callable[[Tensor, Tensor], float]
    proven_beta_at: Callable[[Tensor, float], ProvenBeta | None]
    certified_spectrum_at: Callable[[Tensor], tuple[float, float, float | None]] | None = None
    every: int = 1
    max_checks: int = 50
    run_step: float | None = None
    rigorous_only: bool = False
    hit: PathHit | None = None
    hit_w: Tensor | None = None
    estimated_hit: PathHit | None = None
    checks: int = 0
    last_check: int = -(10**9)
    last_cheap: int = -(10**9)
    skipped: int = 0
    max_distance_after: float = 0.0
    last_threshold: float | None = None
    notes: list[str] = field(default_factory=list)

    def __call__(self, t: int, w: Tensor, r: Tensor, g: Tensor) -> float | None:
        """Check step t; on a closing check return the certified step, which the checking run
        then uses from t on (so the rest of the run IS the certified GD), or None when the run's
        step is already within it. After an estimated closure the checks go on, looking for a
        rigorous one (which then replaces it)."""
        if self.hit is not None:
            assert self.hit_w is not None
            self.max_distance_after = max(self.max_distance_after, float((w - self.hit_w).norm()))
            if self.hit.tier == "rigorous":
                return None
        rigorous_only = self.rigorous_only or self.hit is not None
        if rigorous_only and self.certified_spectrum_at is None:
            return None
        rn = float(r.norm())
        gn = float(g.norm())
        if rn == 0.0 or gn == 0.0:
            return None
        if self.checks >= self.max_checks or t - self.last_check < self.every:
            return None
        # the cheap check costs one forward-over-forward pass (about five GD steps on the MLPs
        # of bench/): it runs on the same cadence as the full checks, not at every step
        if t - self.last_cheap < self.every:
            return None
        self.last_cheap = t
        lam_ub = (gn / rn) ** 2
        if self.certified_spectrum_at is None and self.beta_estimate > 0:
            # only the estimated check can run, and it uses beta >= beta_estimate: r* from
            # (lam_ub, beta_estimate) bounds its threshold from above at no cost
            bound = path_residual_threshold(lam_ub, self.beta_estimate).r_star
            if rn > bound:
                self.skipped += 1
                return None
        beta_lb = max(self.second_directional_norm(w, g / gn), 0.0)
        if beta_lb > 0 and rn > path_residual_threshold(lam_ub, beta_lb).r_star:
            return None
        self.checks += 1
        self.last_check = t
        hit = self.full_check(t, w, rn, r, rigorous_only=rigorous_only)
        if hit is None:
            return None
        if self.hit is not None:
            self.estimated_hit = self.hit
        self.hit = hit
        self.hit_w = w.detach().clone()
        self.max_distance_after = 0.0
        if self.run_step is not None and self.run_step <= hit.step_size:
            return None
        self.run_step = hit.step_size
        return hit.step_size

    def full_check(
        self, t: int, w: Tensor, rn: float, r: Tensor | None = None, *, rigorous_only: bool = False
    ) -> PathHit | None:
        """lambda_t and J_t; the proven beta on B(w_t, rho) for a few rho with the floating-point
        bounds of lambda_t, J_t and ||r_t|| (rigorous), else the estimated beta (max of w0's
        estimate and ||H_F(w_t)||) with the eigvalsh values (estimated). The reported r*(w_t) is
        the maximum over the balls the beta holds on (the constrained value)."""
        lam, J = self.spectrum_at(w)
        if not lam > 0:
            return None
        R_t = path_length_radius(rn, lam)  # the radius any ball needs (beta rho -> 0)
        eta_run = self.run_step
        if self.certified_spectrum_at is not None:
            lam_c, J_c, f_err = self.certified_spectrum_at(w)
            # the exact ||r_t||: the computed norm rounded up plus E_r (docs/theory.md 15.4)
            if f_err is None:
                lam_c = 0.0
            rn_up = norm_upper(r) if r is not None else rn
            rn_c = residual_upper(rn_up, f_err or 0.0)
            for factor in (2.0, 8.0, 32.0) if lam_c > 0 else ():
                pb = self.proven_beta_at(w, factor * R_t)
                if pb is None:
                    break
                thr = path_residual_threshold(lam_c, pb.beta, factor * R_t)
                rho = thr.rho_star
                gap = path_gap(rho, lam_c, pb.beta) * (1.0 - PROVEN_SLACK)
                s_t = math.sqrt(lam_c) - pb.beta * rho
                if gap >= rn_c and s_t >= 1e-4 * (J_c + pb.beta * rho):
                    r_star = thr.r_star
                    return _hit(
                        t, "rigorous", rn_c, lam_c, J_c, pb.beta, rho, r_star, pb.method, eta_run
                    )
        if rigorous_only:
            return None
        # beta >= beta_estimate, so r* with beta_estimate bounds r* from above: the Hessian norm
        # at w_t (the expensive part) is only computed when that bound lets the check pass
        thr = path_residual_threshold(lam, self.beta_estimate)
        if rn > thr.r_star:
            self.last_threshold = thr.r_star
            return None
        beta = max(self.beta_estimate, self.hessian_norm_at(w))
        thr = path_residual_threshold(lam, beta)
        self.last_threshold = thr.r_star
        if rn <= thr.r_star:
            rho = thr.rho_star if math.isfinite(thr.rho_star) else 2.0 * R_t
            return _hit(
                t,
                "estimated",
                rn,
                lam,
                J,
                beta,
                rho,
                thr.r_star,
                "max of the Hessian norms at w0, the probes and w_t (estimated)",
                eta_run,
            )
        return None


def _hit(
    t: int,
    tier: str,
    rn: float,
    lam: float,
    J: float,
    beta: float,
    rho: float,
    r_star: float,
    method: str,
    eta_run: float | None = None,
) -> PathHit:
    """The GD constants at w_t; the step is the certified one, or the run's if that is smaller."""
    s = math.sqrt(lam) - beta * rho
    mu = s * s
    L = J + beta * rho
    eta = safe_step(L, beta, rn)
    if eta_run is not None and eta_run < eta:
        eta = eta_run
    return PathHit(
        step=t,
        tier=tier,
        residual_norm=rn,
        lambda_min=lam,
        jacobian_norm=J,
        beta=beta,
        rho=rho,
        mu=mu,
        L_F=L,
        radius=path_length_radius(rn, mu),
        step_size=eta,
        rate=min(max(1.0 - eta * mu, 0.0), 1.0),
        r_star=r_star,
        beta_method=method,
    )


def steps_needed(losses: list[float] | tuple[float, ...], r_star: float | None) -> int | None:
    """Steps the run would need for ||r|| to reach r*, at the linear rate observed over the
    second half of the run: T + ceil(2 ln(||r_T|| / r*) / -ln(q_obs)),
    q_obs = (L_T / L_{T/2})^(1 / (T - T/2)). None when the run does not decrease."""
    T = len(losses) - 1
    if r_star is None or not math.isfinite(r_star) or r_star <= 0 or T < 2:
        return None
    h = T // 2
    if not (losses[T] > 0 and losses[h] > 0 and losses[T] < losses[h]):
        return None
    q = (losses[T] / losses[h]) ** (1.0 / (T - h))
    rn = math.sqrt(2.0 * losses[T])
    if rn <= r_star:
        return T
    return T + math.ceil(2.0 * math.log(rn / r_star) / -math.log(q))


def path_section(
    checker: PathChecker, rec: RunRecord, r_star: float, closes0: bool
) -> PathCertificate:
    """The report's ``path`` section from the checker's hit (see module docstring);
    bound_held_after checks L_t <= (1 - eta_run mu)^(t - t*) L_t* and ||w_t - w_t*|| <= R when
    the run's step is within the step certified at t*."""
    thr = finite_or_none(r_star)
    if closes0 and checker.hit is None:
        return PathCertificate(
            residual_threshold=thr,
            certified_from_step=0,
            note="the certificate closes at w0 (step 0)",
        )
    hit = checker.hit
    if hit is None:
        return PathCertificate(
            residual_threshold=thr,
            certified_from_step=None,
            checked_steps=checker.checks,
            steps_needed_estimate=steps_needed(list(rec.losses), checker.last_threshold or thr),
            note="the checking run never reached the residual threshold",
        )
    # from t* on the run used the certified step (gd_run switched to it)
    bad = bound_violations(
        rec.losses, float(rec.losses[hit.step]), hit.rate, rec.loss_atol, start=hit.step
    )
    held = bad.size == 0 and checker.max_distance_after <= hit.radius * (1 + 1e-9)
    before = checker.estimated_hit
    earlier = (
        f"an estimated closure at step {before.step} was followed by this rigorous one; "
        if before is not None
        else ("the certificate closed at w0 with estimates; " if closes0 else "")
    )
    note = earlier + (
        f"from step {hit.step} the checking run used a step <= the certified step "
        f"({hit.step_size:.4g}); "
        f"checked L_t <= rate^(t - t*) L_t* and ||w_t - w_t*|| <= R on the remaining "
        f"{len(rec.losses) - 1 - hit.step} steps (max distance {checker.max_distance_after:.4g})"
    )
    return PathCertificate(
        residual_threshold=thr,
        certified_from_step=hit.step,
        mu=hit.mu,
        radius=hit.radius,
        step_size=hit.step_size,
        rate=hit.rate,
        residual_at_step=hit.residual_norm,
        tier=hit.tier,  # type: ignore[arg-type]
        bound_held_after=held,
        note=note,
        lambda_min_at_step=hit.lambda_min,
        jacobian_norm_at_step=hit.jacobian_norm,
        beta=hit.beta,
        ball_radius=hit.rho,
        residual_threshold_at_step=finite_or_none(hit.r_star),
        checked_steps=checker.checks,
        beta_method=hit.beta_method,
        inequality=_inequality(hit),
        step_changes=[StepChange(step=t, step_size=eta) for t, eta in rec.switches],
    )


def _inequality(hit: PathHit) -> str:
    """The closing inequality of the local PL* theorem at w_t*, with its numbers."""
    kind = (
        "proven: lambda_min from below by a shifted Cholesky certificate and E_J, ||J|| and "
        "||r|| from above with the running-error bounds, beta from the analytic bound"
        if hit.tier == "rigorous"
        else "estimated: eigenvalues and Hessian norms as computed"
    )
    return (
        f"||r(w_t*)|| <= {hit.residual_norm:.6g} <= rho (sqrt(lambda) - beta rho) / 2, i.e. the "
        f"GD path length 2 ||r|| / sqrt(mu) <= rho, mu = (sqrt(lambda) - beta rho)^2, "
        f"with lambda_min(K(w_t*)) >= {hit.lambda_min:.6g}, "
        f"||J(w_t*)||_2 <= {hit.jacobian_norm:.6g}, beta_F <= {hit.beta:.6g} on "
        f"B(w_t*, rho = {hit.rho:.6g}) ({kind})"
    )
