"""``certify``: does gradient descent train this model on this data to zero loss?

Orchestrates the steps of the PL* certificate (THEORY.md; docs/theory.md); each step lives in
:mod:`plcore.certificate`:

1. preconditions (data fits, device, float64), budget;
2. exact quantities at w0: r0, the spectrum of K(w0), ||H_F(w0)||, max_i ||Hess F_i(w0)||;
3. N > m or lambda0 ~ 0: the theorem cannot start at w0 (verdict rules 1-2);
4. radius search for R(rho) <= rho (proven bounds first, then probes);
5. predictions: GD (step, rate, kappa, iterations), SGD (derived), PL*_eps;
6. the checking run (real GD with the predicted step), with the path certificate applied at
   its iterates; an optional SGD run;
7. width extrapolation of the closing factor (MLP specs);
8. verdict and reasons, report.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from plcore.certificate import assemble as A
from plcore.certificate import verdict as V
from plcore.certificate._json import finite_or_none
from plcore.certificate.budget import get_budget
from plcore.certificate.checking_run import gd_run, pilot_path, sgd_run, validation_section
from plcore.certificate.path import PathChecker, path_section
from plcore.certificate.pl_eps import eps_closure, pl_eps_section
from plcore.certificate.predict_gd import GDConstants, predict_gd, safe_step
from plcore.certificate.radius import (
    ProbeLike,
    RadiusSearch,
    StopRule,
    proven_closure,
    radius_grid,
    search_radius,
    threshold_within,
)
from plcore.certificate.stages import (
    Context,
    fallback_rho,
    sgd_stage,
    w0_hessian_norms,
    width_stage,
)
from plcore.certificate.timings import StageClock
from plcore.certificate.width import closing_factor
from plcore.data import check_fits
from plcore.dataset import Dataset
from plcore.estimate.analytic import has_analytic_bound
from plcore.estimate.spectral import InitialQuantities, initial_quantities
from plcore.hessian import (
    OutputHessianNormResult,
    TensorNormResult,
    hessian_tensor_norm,
    second_directional,
)
from plcore.models.base import Model
from plcore.models.params import select_parameters
from plcore.options import CertifyOptions
from plcore.progress import CancelCheck, Progress, ProgressCallback
from plcore.report.schema import Report, Tier, Verdict


def certify(
    model: Model,
    data: Dataset,
    options: CertifyOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> Report:
    """Certify (or not) that GD from the model's own parameters w0 reaches zero training loss.

    Raises:
        ShapeMismatchError: the data does not fit the model.
        OptionsError: an unknown device; a ``trainable`` / ``frozen`` pattern that matches no
            parameter, or leaves none to train.
        Cancelled: ``should_cancel`` answered True (checked between and within stages).
    """
    options = options or CertifyOptions()
    start = time.perf_counter()
    clock = StageClock(on_progress)
    progress = Progress(clock, should_cancel)
    model = select_parameters(model, trainable=options.trainable, frozen=options.frozen)
    check_fits(model, data)
    device = A.resolve_device(options.device)
    model, data = A.place(model, data, device)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(options.seed)
    ctx = Context(
        model, data, data.X, data.y.reshape(-1), options, get_budget(options.budget), gen, progress
    )
    progress.step(0.0, "initial quantities")
    iq = initial_quantities(
        model, data, kernel_method=options.kernel_method, progress=progress.span(0.0, 0.05)
    )
    n, k, m = data.n_samples, model.output_dim, model.n_params
    reasons: list[str] = V.model_notes(model, data.y)
    if n * k > m:
        reasons.insert(0, V.under_parameterized_reason(n, k, m))
        return _finish(ctx, iq, None, None, reasons, ("not_certified", "rigorous"), start)
    progress.step(0.05, "hessian norm")
    mo, hn = w0_hessian_norms(model, ctx.X, gen, ctx.budget, progress.span(0.05, 0.1))
    return _certify_overparameterized(ctx, iq, hn, mo, reasons, start)


def _certify_overparameterized(
    ctx: Context,
    iq: InitialQuantities,
    hn: TensorNormResult,
    mo: OutputHessianNormResult,
    reasons: list[str],
    start: float,
) -> Report:
    b, p, opt = ctx.budget, ctx.progress, ctx.options
    lam0, J0, r0n, L0 = iq.lambda_min, iq.jacobian_norm, iq.residual_norm, iq.loss
    # the rigorous tier reads the floating-point-proof values (docs/theory.md, section 15)
    lam_c, J_c, r_c = iq.lambda_min_lower, iq.jacobian_norm_upper, iq.residual_norm_upper
    h0 = float(hn.value)
    search = None
    if not V.is_singular(lam0, iq.lambda_max) and r0n > 0:
        p.step(0.1, "radius search")
        search = _search(ctx, iq, hn)
    closure = search.closure if search is not None else None
    closes0 = closure is not None and closure.closes
    # beta behind r* at w0: proven (analytic, on a ball containing rho*) if known, else estimated.
    # The estimate is the probes' (chosen.beta_est), never closure.beta: after a rigorous
    # closure that is the PROVEN bound of the search ball, not an estimate.
    chosen_beta = search.chosen.beta_est if search is not None else None
    beta_est = max(h0, chosen_beta if chosen_beta is not None else h0)
    rho_a = math.sqrt(lam0) / beta_est if beta_est > 0 else (search.grid[-1] if search else 1.0)
    pb = ctx.proven_beta(rho_a) if lam0 > 0 else None
    beta_star, beta_kind = (pb.beta, "proven") if pb is not None else (beta_est, "estimated")
    # (lambda0, ||J0||, ||r0||) behind r*: floating-point bounds with a proven beta
    at0 = (lam_c, J_c, r_c) if pb is not None else (lam0, J0, r0n)
    r_star = threshold_within(at0[0], at0[1], beta_star, rho_a if pb is not None else math.inf)
    if pb is not None and (closure is None or closure.tier != "rigorous"):
        # the grid may step over a narrow closing interval: solve for it with this beta directly
        direct = proven_closure(lam_c, J_c, r_c, pb, rho_a)
        if direct is not None:
            closure, closes0 = direct, True
    eps = None
    if (closure is None or closure.tier != "rigorous") and lam0 > 0 and r0n > 0:
        eps, eps_res = pl_eps_section(
            *at0, L0, beta_star, beta_kind, beta_est, rho_cap=rho_a if pb is not None else math.inf
        )
        closure_eps = eps_closure(eps, eps_res, beta_star, beta_est)
        if closure_eps is not None and (
            closure is None or not closure.closes or closure_eps.tier == "rigorous"
        ):
            closure, closes0 = closure_eps, True
        elif closes0:
            eps = None  # the search closed (estimated) and PL*_eps adds nothing
    at_init = V.init_closure(
        closes=closes0 or r0n == 0,
        residual_norm=at0[2],
        lambda0=at0[0],
        jac_norm=at0[1],
        beta=beta_star,
        beta_kind=beta_kind,
        r_star=r_star,
        beta_estimated=beta_est,
    )
    if closure is not None:
        r_used = r_c if closure.tier == "rigorous" else r0n
        c = GDConstants(closure.L, closure.beta, closure.mu, r_used, closure.form)
    else:
        c = GDConstants(J0, h0, lam0, r0n, "constants at w0 only (no radius search)")
    gd = predict_gd(
        c,
        loss0=L0,
        n_samples=ctx.data.n_samples,
        target_loss=opt.target_loss,
        learning_rate=opt.learning_rate,
        lr_convention=opt.lr_convention,
    )
    sgd = sgd_stage(ctx, iq, c, gd, closure.rho if closure is not None else None)
    # checking run, with the path certificate applied at its iterates
    steps = b.validation_steps if opt.validation_steps is None else opt.validation_steps
    last_u = [hn.u]  # each path check warm-starts from the previous one's solution
    checker = PathChecker(
        spectrum_at=ctx.spectrum,
        beta_estimate=beta_est,
        hessian_norm_at=lambda w: _path_hessian_norm(ctx, w, last_u),
        second_directional_norm=lambda w, u: float(
            second_directional(ctx.model, ctx.X, u, params=w).norm()
        ),
        proven_beta_at=lambda w, rho: ctx.proven_beta(rho, w),
        certified_spectrum_at=(
            ctx.certified_spectrum_at
            if has_analytic_bound(ctx.model) and ctx.model.smooth
            else None
        ),
        every=max(1, steps // b.path_checks),
        max_checks=b.path_checks,
        run_step=gd.step_size,
        rigorous_only=closes0,  # after an estimated closure at w0 a rigorous one may still come
    )
    assert gd.step_size is not None
    w0 = ctx.model.flat_params()
    rec = gd_run(
        ctx.model,
        ctx.X,
        ctx.y,
        w0,
        step_size=gd.step_size,
        steps=steps,
        hook=None if closes0 and closure is not None and closure.tier == "rigorous" else checker,
        progress=p.span(0.5, 0.85),
    )
    sgd_losses = None
    if opt.validate_sgd and sgd and sgd[0].step_size is not None:
        sgd_losses = sgd_run(
            ctx.model,
            ctx.X,
            ctx.y,
            w0,
            step_size=sgd[0].step_size,
            batch_size=sgd[0].batch_size,
            steps=steps,
            generator=ctx.gen,
            progress=p.span(0.85, 0.9),
        )
    validation = validation_section(
        rec,
        rate=gd.rate,
        radius=finite_or_none(closure.R) if closes0 and closure else None,
        applicable=closes0,
        sgd_losses=sgd_losses,
        sgd_batch_size=sgd[0].batch_size if sgd_losses is not None else None,
    )
    p.step(0.9, "path certificate")
    path = path_section(checker, rec, r_star, closes0)
    p.step(0.92, "width extrapolation")
    width = width_stage(ctx, closing_factor(r0n, lam0, J0, h0))
    decision = V.decide(
        ctx.model,
        ctx.X,
        iq,
        closure,
        at_init,
        validation.bound_held,
        validation.first_violation_step,
        path,
        reasons,
        beta_kind,
        beta_star,
    )
    if not closes0 and closure is not None:
        reasons.append(
            "GD predictions use the probe estimates at the ball with the smallest "
            "R/rho (the certificate did not close there)"
        )
    return _finish(
        ctx,
        iq,
        hn,
        mo,
        reasons,
        decision,
        start,
        search=search,
        gd=gd,
        sgd=sgd,
        validation=validation,
        path=path,
        at_init=at_init,
        width=width,
        eps=eps,
    )


def _path_hessian_norm(ctx: Context, w: torch.Tensor, last_u: list[torch.Tensor]) -> float:
    """||H_F(w)|| at an iterate of the checking run: a lower estimate (the power method from the
    previous check's solution, ``probe_hessian_max_iter`` iterations, as at probe points)."""
    res = hessian_tensor_norm(
        ctx.model,
        ctx.X,
        params=w,
        generator=ctx.gen,
        restarts=1,
        tol=1e-6,
        max_iter=ctx.budget.probe_hessian_max_iter,
        krylov_dim=ctx.budget.power_krylov_dim,
        warm_starts=(last_u[0],),
        default_start=False,
        progress=Progress(should_cancel=ctx.progress.should_cancel),
    )
    last_u[0] = res.u
    return float(res.value)


def _search(ctx: Context, iq: InitialQuantities, hn: TensorNormResult) -> RadiusSearch:
    """Radius search (proven bounds, then probes; the pilot GD iterates are probed as path).

    The balls share one :class:`ProbeCache`, seeded with w0 (its spectrum and the Hessian-norm
    solution of the previous stage): points of smaller balls count for larger ones, and every
    Hessian solve is warm-started from the nearest solved point.
    """
    from plcore.estimate.probes import ProbeCache, ProbeRecord, probe_ball

    b = ctx.budget
    lam0, J0, r0n, h0 = iq.lambda_min, iq.jacobian_norm, iq.residual_norm, float(hn.value)
    w0 = ctx.model.flat_params()
    pilot = pilot_path(ctx.model, ctx.X, ctx.y, w0, safe_step(J0, h0, r0n), b.pilot_steps)
    grid = radius_grid(lam0, J0, r0n, h0, b.radius_grid, b.radius_growth)
    span = ctx.progress.span(0.1, 0.5)
    done = [0]
    cache = ProbeCache()
    cache.records.append((w0, ProbeRecord("center", 0.0, lam0, J0, h0)))
    cache.results.append((w0, hn))

    def probe(rho: float, stop: StopRule | None = None) -> ProbeLike:
        # each ball reports within its own slice, so the overall fraction never goes back
        k = max(len(grid), 1)
        sub = span.span(min(done[0], k - 1) / k, min(done[0] + 1, k) / k)
        done[0] += 1
        near = [w for w in pilot if float((w - w0).norm()) <= rho]
        return probe_ball(
            ctx.model,
            ctx.data,
            rho,
            generator=ctx.gen,
            n_sphere=b.n_sphere,
            n_adversarial=b.n_adversarial,
            adversarial_steps=b.adversarial_steps,
            path=near,
            kernel_method=ctx.options.kernel_method,
            progress=sub,
            cache=cache,
            stop=stop,
            hessian_max_iter=b.probe_hessian_max_iter,
            hessian_krylov_dim=b.power_krylov_dim,
        )

    return search_radius(
        lambda0=lam0,
        jac_norm=J0,
        residual_norm=r0n,
        hessian_norm0=h0,
        grid=grid,
        fallback_rho=fallback_rho(lam0, J0, r0n, h0),
        proven_beta=ctx.proven_beta,
        probe=probe,
        proven_inputs=(iq.lambda_min_lower, iq.jacobian_norm_upper, iq.residual_norm_upper),
        probe_until=probe,
    )


def _finish(
    ctx: Context,
    iq: InitialQuantities,
    hn: TensorNormResult | None,
    mo: OutputHessianNormResult | None,
    reasons: list[str],
    decision: tuple[Verdict, Tier],
    start: float,
    **sections: Any,
) -> Report:
    ctx.progress.step(0.99, "report")
    report = A.build_report(
        ctx.model,
        ctx.data,
        ctx.options,
        ctx.X.device,
        iq,
        hn,
        mo,
        reasons,
        decision[0],
        decision[1],
        time.perf_counter() - start,
        **sections,
    )
    ctx.progress.check()  # a cancel that arrived while the report was built still wins
    clock = ctx.progress.on_progress
    timings = clock.finish() if isinstance(clock, StageClock) else {}
    return report.model_copy(update={"timings": timings})
