"""Shared state of one certification run and the small stages around the core certificate
(SGD predictions, width extrapolation), used by :func:`plcore.certification.certify`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from plcore.certificate import assemble as A
from plcore.certificate.budget import Budget
from plcore.certificate.predict_gd import GDConstants
from plcore.certificate.predict_sgd import per_sample_smoothness, predict_sgd
from plcore.certificate.radius import ProvenBeta
from plcore.certificate.width import closing_factor, width_sweep
from plcore.dataset import Dataset
from plcore.estimate.analytic import beta_upper_bound
from plcore.estimate.bounds import residual_threshold
from plcore.estimate.rounding import evaluation_bound_refusal
from plcore.estimate.spectral import InitialQuantities, certified_spectrum, initial_quantities
from plcore.hessian import (
    OutputHessianNormResult,
    TensorNormResult,
    hessian_tensor_norm,
    max_output_hessian_norm,
)
from plcore.kernel import tangent_kernel
from plcore.kernel.extremes import kernel_extremes
from plcore.models.base import Model
from plcore.options import CertifyOptions
from plcore.progress import Progress
from plcore.report.schema import GD, SGDPrediction, WidthExtrapolation

AFFINE_BETA_METHOD = "affine in the trainable parameters (structural): H_F = 0"


@dataclass
class Context:
    model: Model
    data: Dataset
    X: Tensor
    y: Tensor  # flat, length N
    options: CertifyOptions
    budget: Budget
    gen: torch.Generator
    progress: Progress
    _last_kernel: tuple[Tensor, Tensor, Tensor] | None = field(default=None, repr=False)
    _norms: tuple[Tensor | None, dict[int, float]] | None = field(default=None, repr=False)

    def proven_beta(self, rho: float, w: Tensor | None = None) -> ProvenBeta | None:
        if not math.isfinite(rho):
            return None
        if evaluation_bound_refusal(self.model) is not None:
            return None  # no running-error bound of the evaluated F and J: no rigorous tier
        if self.model.affine_in_params:  # H_F = 0 identically (plcore.models.affine)
            return ProvenBeta(0.0, None, AFFINE_BETA_METHOD)
        # ||W_j||_2 bounds depend on w only: reuse them across the radii tried at one point
        if self._norms is None or self._norms[0] is not w:
            self._norms = (w, {})
        ab = beta_upper_bound(self.model, self.X, rho, params=w, norm_cache=self._norms[1])
        if ab is None:
            return None
        return ProvenBeta(ab.beta_upper, ab.jacobian_upper, f"analytic {ab.method} bound")

    def hessian_norm(self, w: Tensor | None, restarts: int, tol: float, max_iter: int) -> float:
        return float(
            hessian_tensor_norm(
                self.model,
                self.X,
                params=w,
                generator=self.gen,
                restarts=restarts,
                tol=tol,
                max_iter=max_iter,
            ).value
        )

    def spectrum(self, w: Tensor) -> tuple[float, float]:
        """(lambda_min(K(w)), ||J(w)||_2): estimates, from eigvalsh for small N and from one
        Cholesky factorisation and Lanczos otherwise (:func:`kernel_extremes`, several times
        cheaper than a full eigendecomposition at N in the thousands)."""
        p = Progress(should_cancel=self.progress.should_cancel)
        K = p.run_blocking(
            lambda: tangent_kernel(self.model, self.X, self.options.kernel_method, params=w),
            "tangent kernel",
        )
        ex = p.run_blocking(
            lambda: kernel_extremes(K, generator=self.gen, check=p.check), "kernel extremes"
        )
        # the extremes only place the shifts of the certified bounds (certified_spectrum_at)
        ev = torch.tensor([ex.lambda_min_upper, ex.lambda_max_lower], dtype=torch.float64)
        self._last_kernel = (w, K, ev)
        return max(ex.lambda_min_upper, 0.0), math.sqrt(max(ex.lambda_max_lower, 0.0))

    def certified_spectrum_at(self, w: Tensor) -> tuple[float, float, float | None]:
        """(lower bound of lambda_min(K(w)), upper bound of ||J(w)||_2, E_F >= ||F_computed(w) -
        F(w)||) for the exact model, in floating point (docs/theory.md, section 15; E_F None: no
        running-error bound); reuses the kernel of the last :meth:`spectrum` at w."""
        last = self._last_kernel
        if last is not None and last[0] is w:
            K, ev = last[1], last[2]
        else:
            K = tangent_kernel(self.model, self.X, self.options.kernel_method, params=w)
            ev = None
        cert = Progress(should_cancel=self.progress.should_cancel).run_blocking(
            lambda: certified_spectrum(K, self.model, ev, X=self.X, params=w), "certified bounds"
        )
        f_err = None if cert.evaluation is None else cert.evaluation.output
        return cert.lambda_min_lower, cert.jacobian_norm_upper, f_err


def w0_hessian_norms(
    model: Model, X: Tensor, gen: torch.Generator, budget: Budget, progress: Progress
) -> tuple[OutputHessianNormResult, TensorNormResult]:
    """(max_i ||Hess F_i(w0)||, ||H_F(w0)||) with the budget's solver settings: the output scan
    first, its top eigenvector then warm-starts the tensor norm's power method (so the tensor
    norm is >= the output one). The report's ``initial.hessian_norm`` and the width study's
    Hessian norm both come from here."""
    b = budget
    mo = max_output_hessian_norm(
        model,
        X,
        generator=gen,
        scan_limit=b.output_hessian_scan,
        tol=b.hessian_tol,
        krylov_dim=b.krylov_dim,
        max_restarts=b.output_hessian_restarts,
        progress=progress.span(0.0, 0.2),
    )
    hn = hessian_tensor_norm(
        model,
        X,
        generator=gen,
        restarts=b.power_restarts,
        tol=b.hessian_tol,
        max_iter=b.hessian_max_iter,
        krylov_dim=b.power_krylov_dim,
        race_iter=b.power_race_iter,
        warm_starts=() if mo.vector is None else (mo.vector,),
        progress=progress.span(0.2, 1.0),
    )
    return mo, hn


def fallback_rho(lam0: float, J0: float, r0n: float, h0: float) -> float:
    """The ball probed when no radius can close: rho* of r*(||H_F(w0)||) (where the bound form is
    closest to closing), else R(0)."""
    thr = residual_threshold(lam0, J0, h0)
    return thr.rho_star if 0 < thr.rho_star < math.inf else 2.0 * J0 * r0n / lam0


def sgd_stage(
    ctx: Context, iq: InitialQuantities, c: GDConstants, gd: GD, rho: float | None
) -> list[SGDPrediction]:
    """SGD predictions, labelled as such: the guarantee needs PL* and smoothness on
    B(w0, R_SGD), but mu and beta_F come from the GD ball B(w0, rho) and R_SGD is usually far
    larger, so its hypotheses are not verified (``hypotheses_verified`` false)."""
    if not ctx.options.batch_sizes:
        return []
    K0 = tangent_kernel(ctx.model, ctx.X, ctx.options.kernel_method)
    beta = per_sample_smoothness(K0, iq.r0, ctx.model.output_dim, c.beta_F)
    out = predict_sgd(
        ctx.options.batch_sizes,
        mu=c.mu,
        beta=beta,
        n=ctx.data.n_samples,
        loss0=iq.loss,
        target_loss=gd.target_loss or 1e-6 * iq.loss,
        confidence=ctx.options.sgd_confidence,
    )
    out = [
        s.model_copy(
            update={
                "radius_ratio": (
                    s.radius / rho if s.radius is not None and rho is not None and rho > 0 else None
                ),
                "hypotheses_verified": False,
            }
        )
        for s in out
    ]
    return [s.model_copy(update={"method": _sgd_method(c, s.radius_ratio)}) for s in out]


def _sgd_method(c: GDConstants, ratio: float | None) -> str:
    where = f" (R_SGD is {ratio:.3g} times that radius)" if ratio is not None else ""
    return (
        f"PREDICTION, hypotheses not verified: the guarantee needs PL* and smoothness on "
        f"B(w0, R_SGD), but they are verified on the GD ball only{where}; "
        f"beta = max_i (||J_i(w0)||^2 + ||r_i(w0)|| beta_F), beta_F and mu from "
        f"'{c.source}'; derived (docs/theory.md, SGD)"
    )


def w0_closing_factor(
    model: Model,
    data: Dataset,
    generator: torch.Generator,
    budget: Budget,
    kernel_method: str,
    progress: Progress | None = None,
) -> float | None:
    """||r0|| / r*(lambda0, ||J0||, ||H_F(w0)||): the width sweep's factor (no probes)."""
    q = initial_quantities(model, data, kernel_method=kernel_method)
    h = hessian_tensor_norm(
        model,
        data.X,
        generator=generator,
        restarts=budget.power_restarts,
        tol=budget.hessian_tol,
        max_iter=budget.hessian_max_iter,
        progress=progress,
    )
    return closing_factor(q.residual_norm, q.lambda_min, q.jacobian_norm, float(h.value))


def width_stage(ctx: Context, reference: float | None) -> WidthExtrapolation | None:
    spec = ctx.model.spec
    if (
        spec is None
        or spec.get("type") != "mlp"
        or ctx.model.n_params > ctx.budget.width_max_params
        # the sweep rebuilds the spec at other widths with every parameter trainable
        or any(not p.requires_grad for p in ctx.model.module.parameters())
    ):
        return None

    def factor(model: Model, data: Dataset) -> float | None:
        return w0_closing_factor(
            model,
            data,
            ctx.gen,
            ctx.budget,
            ctx.options.kernel_method,
            Progress(should_cancel=ctx.progress.should_cancel),
        )

    p = ctx.progress
    return width_sweep(
        spec,
        ctx.data,
        ctx.budget.width_fractions,
        factor_at=factor,
        prepare=lambda mdl: A.place(mdl, ctx.data, ctx.X.device)[0],
        reference_factor=reference,
        on_width=lambda i, t: p.step(0.92 + 0.06 * i / t, "width extrapolation"),
    )
