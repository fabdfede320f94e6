"""One point of a width or depth study: the base architecture at one width, depth and seed.

Two modes (:data:`plcore.report.study_schema.StudyMode`):

* ``"certify"`` (default): :func:`plcore.certify` with the study's options. The row takes the
  report's ||H_F(w0)|| (``initial.hessian_norm``), lambda0 and lambda_max of K(w0), mu, R,
  verdict and tier. The checking run's final weights w_T are not part of the report, so the
  run is replayed here (same start, step, switch step and number of steps: the same floating
  point operations, so the same w_T; the replay's final loss is compared with the report's).
* ``"quantities"``: only what the study's plots need (2x cheaper than certify with budget fast,
  4x with standard, measured at width 512): the spectrum of
  K(w0), ||H_F(w0)|| with the same solver and settings as certify
  (:func:`plcore.certificate.stages.w0_hessian_norms`), and a GD run of the budget's
  validation steps with the step 1 / (||J0||^2 + ||H_F(w0)|| ||r0||) (THEORY.md section 3 with
  the constants at w0). No mu, R or verdict.

The relative kernel drift is ||K(w_T) - K(w0)||_F / ||K(w0)||_F (Frobenius norms; Lee et al.
2019, "Wide neural networks of any depth evolve as linear models", measure the same ratio).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import torch

from plcore.certificate import assemble as A
from plcore.certificate.budget import get_budget
from plcore.certificate.checking_run import RunRecord, StepHook, gd_run
from plcore.certificate.predict_gd import safe_step
from plcore.certificate.stages import w0_hessian_norms
from plcore.data import check_fits
from plcore.dataset import Dataset
from plcore.kernel import tangent_kernel
from plcore.models.base import Model
from plcore.models.params import select_parameters
from plcore.models.spec import load_spec_model
from plcore.options import CertifyOptions
from plcore.progress import CancelCheck, Progress, ProgressCallback
from plcore.report.schema import Report
from plcore.report.study_schema import StudyMode, StudyRow
from plcore.study.scaling import spec_at
from plcore.study.theory import infinite_width_lambda_min

REPLAY_RTOL = 1e-8
"""Relative difference of the final loss above which a replayed checking run is flagged."""


def study_point(
    base_spec: Mapping[str, Any],
    data: Dataset,
    *,
    width: int,
    seed: int,
    depth: int | None = None,
    options: CertifyOptions | None = None,
    mode: StudyMode = "certify",
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> StudyRow:
    """The study row of ``base_spec`` at hidden width ``width`` (``depth`` hidden layers, MLP
    shorthand only; None keeps the base depth) with initialisation seed ``seed``.

    Raises:
        ModelSpecError: nothing to scale, or the scaled spec is invalid.
        ShapeMismatchError, OptionsError: as :func:`plcore.certify`.
        Cancelled: ``should_cancel`` answered True.
    """
    options = options or CertifyOptions()
    start = time.perf_counter()
    progress = Progress(on_progress, should_cancel)
    spec = spec_at(base_spec, width=width, seed=seed, depth=depth)
    model = select_parameters(
        load_spec_model(spec), trainable=options.trainable, frozen=options.frozen
    )
    check_fits(model, data)
    model, data = A.place(model, data, A.resolve_device(options.device))
    w0 = model.flat_params()
    X, y = data.X, data.y.reshape(-1)
    notes: list[str] = []
    if mode == "certify":
        report = _certify(model, data, options, progress.span(0.0, 0.9))
        run = _replay(model, X, y, w0, report, options, progress.span(0.9, 0.97))
        if run is not None:
            notes += _replay_notes(run, report)
        values = _from_report(report)
    else:
        values, run = _quantities(model, data, options, progress.span(0.0, 0.97))
    drift = None
    if run is not None and run.final_params is not None:
        progress.step(0.97, "kernel drift")
        drift = relative_kernel_drift(model, X, run.final_params, options.kernel_method)
    depth_now = len(spec["widths"]) if spec["type"] == "mlp" else None
    lam_inf, _ = infinite_width_lambda_min(spec, data.X)
    progress.step(1.0, "point done")
    return StudyRow(
        width=width,
        depth=depth_now,
        seed=seed,
        n_params=model.n_params,
        lambda_min_infinite_width=lam_inf,
        kernel_drift=drift,
        drift_steps=len(run.losses) - 1 if run is not None else 0,
        drift_step_size=run.step_size if run is not None else None,
        final_loss=float(run.losses[-1]) if run is not None else None,
        elapsed_s=round(time.perf_counter() - start, 3),
        notes=notes,
        **values,
    )


def relative_kernel_drift(model: Model, X: torch.Tensor, w_T: torch.Tensor, method: str) -> float:
    """||K(w_T) - K(w0)||_F / ||K(w0)||_F (K = J J^T, w0 the model's own parameters)."""
    K0 = tangent_kernel(model, X, method)
    KT = tangent_kernel(model, X, method, params=w_T)
    denom = float(torch.linalg.matrix_norm(K0))
    return float(torch.linalg.matrix_norm(KT - K0)) / denom if denom > 0 else math.inf


def switch_hook(at: int | None, step_after: float | None) -> StepHook | None:
    """A checking-run hook that only switches the step to ``step_after`` at step ``at`` (what
    the path certificate did in the run being replayed)."""
    if at is None or step_after is None:
        return None

    def hook(t: int, w: torch.Tensor, r: torch.Tensor, g: torch.Tensor) -> float | None:
        return step_after if t == at else None

    return hook


def _certify(model: Model, data: Dataset, options: CertifyOptions, progress: Progress) -> Report:
    from plcore.certification import certify

    return certify(
        model, data, options, on_progress=progress.step, should_cancel=progress.should_cancel
    )


def _from_report(report: Report) -> dict[str, Any]:
    ini, c = report.initial, report.constants
    return {
        "hessian_norm": ini.hessian_norm,
        "hessian_norm_converged": ini.hessian_norm_converged,
        "max_output_hessian_norm": ini.max_output_hessian_norm,
        "lambda_min": ini.lambda_min,
        "lambda_max": ini.lambda_max,
        "initial_loss": ini.loss,
        "mu": c.mu.estimate,
        "mu_lower_bound": c.mu.lower_bound,
        "radius": c.radius,
        "verdict": report.verdict,
        "tier": report.tier,
        "certified_from_step": report.path.certified_from_step,
    }


def _replay(
    model: Model,
    X: torch.Tensor,
    y: torch.Tensor,
    w0: torch.Tensor,
    report: Report,
    options: CertifyOptions,
    progress: Progress,
) -> RunRecord | None:
    """The report's checking run again, for w_T; without one (N > m), a run with the w0 step."""
    v = report.validation
    if v is None or v.step_size is None:
        h = report.initial.hessian_norm
        if h is None or not report.initial.jacobian_norm > 0:
            return None
        eta = safe_step(report.initial.jacobian_norm, h, report.initial.residual_norm)
        return gd_run(model, X, y, w0, step_size=eta, steps=_steps(options), progress=progress)
    hook = switch_hook(v.step_size_switched_at, v.step_size_after_switch)
    return gd_run(
        model, X, y, w0, step_size=v.step_size, steps=v.steps, hook=hook, progress=progress
    )


def _replay_notes(run: RunRecord, report: Report) -> list[str]:
    v = report.validation
    if v is None or not v.losses:
        return ["no checking run in the report: w_T comes from a GD run with the w0 step"]
    want, got = v.losses[-1], float(run.losses[-1])
    if abs(got - want) > REPLAY_RTOL * max(abs(want), 1e-300):
        return [
            f"the replayed checking run ended at loss {got:.6g}, the report's at {want:.6g}: "
            "w_T (and the kernel drift) come from the replay"
        ]
    return []


def _steps(options: CertifyOptions) -> int:
    if options.validation_steps is not None:
        return options.validation_steps
    return get_budget(options.budget).validation_steps


def _quantities(
    model: Model, data: Dataset, options: CertifyOptions, progress: Progress
) -> tuple[dict[str, Any], RunRecord | None]:
    X, y = data.X, data.y.reshape(-1)
    progress.step(0.0, "tangent kernel")
    K0 = progress.run_blocking(
        lambda: tangent_kernel(model, X, options.kernel_method), "tangent kernel"
    )
    ev = torch.linalg.eigvalsh(K0)
    lam_min, lam_max = max(float(ev[0]), 0.0), max(float(ev[-1]), 0.0)
    with torch.no_grad():
        r0 = model.apply_flat(model.flat_params(), X) - y
    r0n = float(r0.norm())
    gen = torch.Generator(device="cpu")
    gen.manual_seed(options.seed)
    progress.step(0.1, "hessian norm")
    mo, hn = w0_hessian_norms(model, X, gen, get_budget(options.budget), progress.span(0.1, 0.7))
    values: dict[str, Any] = {
        "hessian_norm": float(hn.value),
        "hessian_norm_converged": hn.converged,
        "max_output_hessian_norm": float(mo.value),
        "lambda_min": lam_min,
        "lambda_max": lam_max,
        "initial_loss": 0.5 * r0n**2,
    }
    if not lam_max > 0:
        return values, None
    eta = safe_step(math.sqrt(lam_max), float(hn.value), r0n)
    run = gd_run(
        model,
        X,
        y,
        model.flat_params(),
        step_size=eta,
        steps=_steps(options),
        progress=progress.span(0.7, 1.0),
    )
    return values, run
