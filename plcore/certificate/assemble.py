"""Pieces of the report that do not depend on the certificate's logic: device placement,
problem and initial sections, constants brackets, conventions, provenance."""

from __future__ import annotations

import copy
import dataclasses
import math
import platform
from datetime import UTC, datetime

import numpy as np
import torch

from plcore.certificate._json import finite_or_none
from plcore.certificate.radius import BallConstants, Closure, RadiusSearch
from plcore.dataset import Dataset
from plcore.errors import OptionsError
from plcore.estimate.spectral import InitialQuantities
from plcore.hessian import OutputHessianNormResult, TensorNormResult
from plcore.models.base import Model
from plcore.models.params import parameter_table
from plcore.options import CertifyOptions
from plcore.report.schema import (
    GD,
    Constants,
    InitClosure,
    Initial,
    LowerBracket,
    ParameterEntry,
    PathCertificate,
    PLEps,
    ProbePoint,
    Problem,
    Provenance,
    Report,
    SGDPrediction,
    Tier,
    UpperBracket,
    Validation,
    Verdict,
    WidthExtrapolation,
)

MAX_SPECTRUM = 2048


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else must be a valid torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise OptionsError(f"device {name!r} is not a torch device: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionsError(f"device {name!r} requested but CUDA is not available here")
    return dev


def place(model: Model, data: Dataset, device: torch.device) -> tuple[Model, Dataset]:
    """Model and data in float64 on ``device``. The caller's model is never modified: a copy is
    made when the device or dtype differs."""
    params = list(model.module.parameters())
    same = all(p.device == device and p.dtype == torch.float64 for p in params)
    if not same:
        module = copy.deepcopy(model.module).to(device=device, dtype=torch.float64)
        module.eval()
        model = dataclasses.replace(model, module=module)
    X = data.X.to(device=device, dtype=torch.float64)
    y = data.y.to(device=device, dtype=torch.float64)
    if X is not data.X or y is not data.y:
        data = dataclasses.replace(data, X=X, y=y)
    return model, data


def problem_section(model: Model, data: Dataset) -> Problem:
    n, k, m = data.n_samples, model.output_dim, model.n_params
    return Problem(
        n_samples=n,
        n_outputs=k,
        n_params=m,
        n_constraints=n * k,
        overparameterization_ratio=m / (n * k),
        model_description=model.description,
        model_format=model.format,
        dataset_name=data.name,
        activations=list(model.activations),
        smooth=model.smooth,
        output_activation=model.output_activation,
    )


def initial_section(
    iq: InitialQuantities,
    hessian: TensorNormResult | None,
    out_hessian: OutputHessianNormResult | None,
) -> Initial:
    ev = iq.eigenvalues.detach().cpu().numpy()
    if ev.size > MAX_SPECTRUM:
        ev = ev[np.unique(np.round(np.linspace(0, ev.size - 1, MAX_SPECTRUM)).astype(int))]
    return Initial(
        loss=iq.loss,
        residual_norm=iq.residual_norm,
        lambda_min=iq.lambda_min,
        lambda_max=iq.lambda_max,
        condition_number=finite_or_none(iq.condition_number),
        jacobian_norm=iq.jacobian_norm,
        hessian_norm=None if hessian is None else float(hessian.value),
        hessian_norm_converged=None if hessian is None else bool(hessian.converged),
        hessian_norm_spread=(
            None
            if hessian is None or hessian.restarts < 2
            else finite_or_none(float(hessian.spread))
        ),
        max_output_hessian_norm=None
        if out_hessian is None
        else finite_or_none(float(out_hessian.value)),
        max_output_hessian_exhaustive=None if out_hessian is None else out_hessian.exhaustive,
        kernel_method=iq.kernel_method,
        spectrum=[float(v) for v in ev],
        lambda_min_lower=finite_or_none(iq.lambda_min_lower),
        jacobian_norm_upper=finite_or_none(iq.jacobian_norm_upper),
        residual_norm_upper=finite_or_none(iq.residual_norm_upper),
        lower_bound_method=iq.lower_bound_method,
    )


def probe_method(ball: BallConstants, n_points: int) -> str:
    return (
        f"max over {n_points} points of B(w0, {ball.rho:.4g}) (w0; random points on spheres "
        f"rho/4, rho/2, rho; GD path; adversarial ascent)"
    )


def constants_section(
    ball: BallConstants | None, closure: Closure | None, n_points: int, residual_norm: float
) -> Constants:
    """The brackets of the chosen ball (all null when no search ran)."""
    if ball is None or closure is None:
        none = "not computed (no radius search: see reasons)"
        return Constants(
            L_F=UpperBracket(estimate=None, upper_bound=None, method=none),
            beta_F=UpperBracket(estimate=None, upper_bound=None, method=none),
            mu=LowerBracket(estimate=None, lower_bound=None, method=none),
            radius=None,
            search_radius=None,
        )
    pm = probe_method(ball, n_points)
    proven = ball.beta_ub is not None
    up = f"; upper bound: {ball.proven_method} (proven)" if proven else "; no proven upper bound"
    return Constants(
        L_F=UpperBracket(
            estimate=finite_or_none(ball.L_est),
            upper_bound=finite_or_none(ball.L_ub),
            method=pm
            + (
                up
                if not proven
                else "; upper bound: min(||J0|| + beta_ub rho, analytic Jacobian bound)"
            ),
        ),
        beta_F=UpperBracket(
            estimate=finite_or_none(ball.beta_est),
            upper_bound=finite_or_none(ball.beta_ub),
            method=pm.replace("max over", "max ||H_F|| (alternating power method) over") + up,
        ),
        mu=LowerBracket(
            estimate=finite_or_none(ball.mu_est),
            lower_bound=finite_or_none(ball.mu_lb),
            method="min lambda_min(K) over the same points"
            + (
                "; lower bound: (sqrt(lambda0) - beta rho)^2 with proven beta (Weyl)"
                if proven
                else "; no proven lower bound"
            ),
        ),
        mu_unnormalized=finite_or_none(2.0 * closure.mu),
        radius=finite_or_none(closure.R if closure.R is not None else math.inf),
        search_radius=ball.rho,
        radius_closes=closure.closes,
        radius_tier=closure.tier,  # type: ignore[arg-type]
    )


def conventions(model: Model) -> dict[str, str]:
    c = {
        "loss": "1/2 sum of squares: L = 1/2 sum_i ||f(x_i) - y_i||^2 (not a mean)",
        "kernel": "K = J J^T (N x N, sample-major: row i*k + c)",
        "pl_star": "1/2-normalized: 1/2||grad L||^2 >= mu L; unnormalized mu' = 2 mu",
        "step_size": "sum convention: w <- w - eta grad L",
        "step_size_mse": "eta_mse = n eta / 2 for MSE = (1/n) sum_i ||f(x_i) - y_i||^2 = (2/n) L "
        "(mean over samples, summed over the k outputs)",
        "sgd": "derived (docs/theory.md section 'SGD'), not printed in the paper; batches drawn "
        "with replacement, update eta * sum of the batch's per-sample gradients; "
        "step_size_mse_mean = s eta / 2 for the batch-mean MSE",
        "brackets": "estimate = extreme value over probe points (lower estimate of a sup, upper "
        "estimate of an inf); upper_bound / lower_bound = proven, or null",
        "tiers": "rigorous: proven constants (analytic Hessian bound) and floating-point bounds "
        "of lambda_min(K), ||J|| and ||r|| at the starting point; estimated: rests on probe "
        "estimates of a sup or an inf",
        "floating_point": "rigorous numbers carry explicit rounding margins (shifted Cholesky for "
        "lambda_min(K) and ||J||, gamma_N for ||r||, activation constants rounded up; "
        "docs/theory.md section 15), and the rounding inside the evaluation of F and J is "
        "covered by a running-error bound of the forward and backward passes (E_J, E_r; "
        "library functions assumed within 4 ulp) for Dense/activation chains (JSON MLP specs, "
        "any layers frozen); models without that bound (ONNX graphs, convolutions) get no "
        "rigorous tier",
        "sgd_status": "prediction: PL* and smoothness are not verified on B(w0, R_SGD)",
        "width_extrapolation": "estimated: beta at w0 from the power method, extrapolated",
        "citation": "Liu, Zhu & Belkin (2022), cited by the content of a result, not by number",
    }
    if not model.smooth:
        c["relu"] = "heuristic: not twice differentiable"
    return c


def versions() -> dict[str, str]:
    """The versions a result depends on (plcert, torch, numpy, python)."""
    from plcore import __version__

    return {
        "plcert": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def provenance(
    model: Model, data: Dataset, options: CertifyOptions, device: torch.device, elapsed_s: float
) -> Provenance:
    return Provenance(
        model_sha256=model.sha256,
        data_sha256=data.sha256,
        versions=versions(),
        device=str(device),
        seed=options.seed,
        elapsed_s=elapsed_s,
        budget=options.budget,
        options=options.model_dump(mode="json"),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def build_report(
    model: Model,
    data: Dataset,
    options: CertifyOptions,
    device: torch.device,
    iq: InitialQuantities,
    hn: TensorNormResult | None,
    mo: OutputHessianNormResult | None,
    reasons: list[str],
    verdict: Verdict,
    tier: Tier,
    elapsed_s: float,
    *,
    search: RadiusSearch | None = None,
    gd: GD | None = None,
    sgd: list[SGDPrediction] | None = None,
    validation: Validation | None = None,
    path: PathCertificate | None = None,
    at_init: InitClosure | None = None,
    width: WidthExtrapolation | None = None,
    eps: PLEps | None = None,
) -> Report:
    """Assemble the :class:`Report`; sections not computed get their documented nulls."""
    ball = search.chosen if search is not None else None
    records = list(getattr(ball.probe, "records", [])) if ball is not None else []
    probes = [
        ProbePoint(
            source=str(r.source),
            distance=float(r.distance),
            lambda_min=float(r.lambda_min),
            jacobian_norm=float(r.jacobian_norm),
            hessian_norm=finite_or_none(r.hessian_norm),
        )
        for r in records
    ]
    none_gd = GD(
        step_size=None,
        step_size_mse_mean=None,
        kappa=None,
        rate=None,
        target_loss=None,
        iterations_to_target=None,
    )
    return Report(
        verdict=verdict,
        tier=tier,
        reasons=[*reasons, *model.notes],
        problem=problem_section(model, data),
        initial=initial_section(iq, hn, mo),
        constants=constants_section(
            ball, search.closure if search else None, len(records), iq.residual_norm
        ),
        gd=gd or none_gd,
        sgd=sgd or [],
        validation=validation,
        path=path
        or PathCertificate(
            residual_threshold=None, certified_from_step=None, note="not applicable (see reasons)"
        ),
        at_init=at_init,
        width_extrapolation=width,
        pl_eps=eps,
        probes=probes,
        conventions=conventions(model),
        provenance=provenance(model, data, options, device, elapsed_s),
        parameters=[
            ParameterEntry(name=p.name, shape=list(p.shape), count=p.count, trainable=p.trainable)
            for p in parameter_table(model)
        ],
    )
