"""Exact quantities at the starting point w0 (THEORY.md sections 1 and 8).

Everything here is exact up to floating point: the residual r0 = F(w0) - y, the loss, and the
full spectrum of the tangent kernel K(w0) = J0 J0^T (a dense symmetric eigenproblem).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plcore.dataset import Dataset
from plcore.errors import ShapeMismatchError
from plcore.estimate.psd import (
    accumulation_length,
    certified_lambda_max_upper,
    certified_lambda_min_lower,
    norm_upper,
    sqrt_up,
)
from plcore.estimate.rounding import (
    EvaluationError,
    corrected_lambda_min_lower,
    corrected_upper,
    evaluation_bound_refusal,
    evaluation_error_bound,
)
from plcore.kernel import (
    KernelMethod,
    outputs,
    parameter_gram,
    resolve_kernel_method,
    tangent_kernel,
)
from plcore.kernel.parameter_gram import gram_accumulation_length
from plcore.models.base import Model
from plcore.models.layers import PARAMETERIZED_LAYERS, Conv2d, Dense
from plcore.progress import Progress


@dataclass(frozen=True)
class InitialQuantities:
    """The residual and the tangent-kernel spectrum at w (w0 unless ``params`` was given).

    Attributes:
        r0: F(w) - y, shape N, sample-major (row i*k + c = output c of sample i).
        loss: L = 1/2 ||r0||^2 (sum over samples, with the 1/2; THEORY.md section 1).
        residual_norm: ||r0||_2.
        eigenvalues: eigenvalues of K(w) = J J^T in ascending order (torch.linalg.eigvalsh).
        lambda_min: max(lambda_min_raw, 0): K is positive semi-definite, so a negative
            eigenvalue is rounding error.
        lambda_min_raw: the smallest eigenvalue as computed (may be slightly negative).
        lambda_max: the largest eigenvalue of K.
        condition_number: lambda_max / lambda_min; inf when lambda_min <= 0.
        jacobian_norm: ||J||_2 = sqrt(lambda_max(K)) (singular values of J are the square roots
            of the eigenvalues of J J^T).
        n_samples, n_outputs: n and k; N = n * k; m = number of parameters.
        kernel_method: the tangent-kernel method that ran (``"auto"`` resolved).
        lambda_min_lower: a lower bound of lambda_min(J J^T) that holds in floating point
            (shifted Cholesky, :func:`plcore.estimate.psd.certified_lambda_min_lower`); 0.0 when
            nothing positive can be certified. The rigorous tier uses this, never lambda_min.
        jacobian_norm_upper: an upper bound of ||J||_2 that holds in floating point.
        residual_norm_upper: an upper bound of the exact ||r0||: the computed norm rounded up
            past the rounding of its sum of squares, plus E_r of the evaluation of F
            (:mod:`plcore.estimate.rounding`); inf for a model without a running-error bound.
        lower_bound_method: how ``lambda_min_lower`` was obtained.
    """

    r0: Tensor
    loss: float
    residual_norm: float
    eigenvalues: Tensor
    lambda_min: float
    lambda_min_raw: float
    lambda_max: float
    condition_number: float
    jacobian_norm: float
    n_samples: int
    n_outputs: int
    N: int
    m: int
    kernel_method: str = "auto"
    lambda_min_lower: float = 0.0
    jacobian_norm_upper: float = math.inf
    residual_norm_upper: float = math.inf
    lower_bound_method: str = ""


@dataclass(frozen=True)
class CertifiedSpectrum:
    """Floating-point-proof bounds of the extreme eigenvalues of K = J J^T (docs/theory.md, 15),
    for the EXACT Jacobian J of the model at the stored weights and data.

    Attributes:
        lambda_min_lower: lambda_min(J J^T) >= this (0.0 if nothing positive is certified, or
            when the model has no running-error bound of its evaluation).
        jacobian_norm_upper: ||J||_2 <= this (inf without a running-error bound).
        method: the certificate used.
        evaluation: the running-error bound of the evaluated F and J
            (:func:`plcore.estimate.rounding.evaluation_error_bound`); None when the model has
            none, and then the two bounds above are the uninformative 0 and inf.
    """

    lambda_min_lower: float
    jacobian_norm_upper: float
    method: str
    evaluation: EvaluationError | None = None

    def residual_norm_upper(self, r: Tensor) -> float:
        """||r_exact|| <= ||r_computed||_upper + E_r (inf without a running-error bound)."""
        if self.evaluation is None:
            return math.inf
        rn = norm_upper(r)
        return corrected_upper(rn, self.evaluation.residual(rn))


def _positional_lengths(model: Model) -> int:
    """Sum over the calls of trainable Conv2d / Bias / Scale layers (and Dense layers on values
    with extra axes) of the rounding chain their structured-kernel entries add beyond the dot
    products counted in m: P^2 + P (the double sum over output positions, or the per-row sum)
    + q (the terms a broadcast parameter sums) + d_in + d_out + 4, from a probe forward of one
    sample (so padding that enlarges an image is counted)."""
    extra = 0

    def hook(mod: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal extra
        positions, fan = 1, 0
        if isinstance(mod, Conv2d):
            positions = math.prod(out.shape[2:])
            fan = math.prod(mod.weight.shape[1:]) + mod.weight.shape[0] // mod.groups
        elif isinstance(mod, Dense):
            positions = math.prod(out.shape[1:-1])
            fan = mod.in_features + mod.out_features
        else:
            size = sum(p.numel() for p in mod.parameters(recurse=False))
            positions = max(1, math.prod(out.shape[1:]) // max(1, size))
        extra += positions * positions + 2 * positions + fan + 4

    layers = [
        mod
        for mod in model.module.modules()
        if isinstance(mod, PARAMETERIZED_LAYERS) and any(p.requires_grad for p in mod.parameters())
    ]
    if all(isinstance(mod, Dense) for mod in layers) and len(model.input_shape) == 1:
        return 0  # flat Dense chains: no positions
    handles = [mod.register_forward_hook(hook) for mod in layers]
    try:
        with torch.no_grad():
            model.module(torch.zeros((1, *model.input_shape), dtype=torch.float64))
    finally:
        for h in handles:
            h.remove()
    return extra


def kernel_accumulation_length(model: Model) -> int:
    """M for the kernel of ``model`` (:func:`plcore.estimate.psd.accumulation_length`). Chains of
    Dense layers: m + 4 (modules + 2). Convolutions, broadcast parameters (Bias, Scale) and
    Dense layers on extra axes make the structured kernel sum over pairs of output positions as
    well (:mod:`plcore.kernel.structured`): their lengths are added layer by layer
    (:func:`_positional_lengths`), a valid chain length for every kernel method. Such positional
    sums may cancel, so their rounding is bounded through |J| with absolute positional sums:
    :func:`certified_spectrum` enlarges M by T / tr(K) (``EvaluationError.abs_gram_trace``)."""
    M = accumulation_length(model.n_params, len(list(model.module.modules())))
    return M + _positional_lengths(model)


def _absolute_accumulation(M: int, K: Tensor, ev: EvaluationError | None) -> int:
    """M' with gamma_{M'} tr(fl K) >= gamma_M T, T = ev.abs_gram_trace (>= sum_i || |J|_i ||^2):
    gamma_{cM} >= c gamma_M for c >= 1, so M' = ceil(c M) with c = max(1, T / tr(fl K))."""
    if ev is None or ev.abs_gram_trace is None:
        return M
    tr = float(K.diagonal().clamp(min=0).sum())
    if not tr > 0:
        return M
    c = ev.abs_gram_trace / tr * (1.0 + 1e-6)
    return M if c <= 1.0 else math.ceil(c * M)


def certified_spectrum(
    K: Tensor,
    model: Model,
    eigenvalues: Tensor | None = None,
    *,
    X: Tensor | None = None,
    params: Tensor | None = None,
) -> CertifiedSpectrum:
    """lambda_min(J J^T) from below and ||J||_2 from above for the exact Jacobian J at ``params``
    (w0 when None) on the inputs ``X``, in floating point (docs/theory.md, section 15):

    1. for the evaluated Jacobian J_comp: shifted Cholesky factorizations of K - s I and s I - K
       with the backward-error margin of Higham (2002), Theorem 10.3, and the Gram-product
       rounding gamma_M tr(K) (:mod:`plcore.estimate.psd`);
    2. from J_comp to J: the running-error bound E_J >= ||J_comp - J||_F
       (:mod:`plcore.estimate.rounding`) and Weyl's inequality for singular values,
       lambda_min(J J^T) >= (sqrt(lambda_lower) - E_J)^2, ||J||_2 <= ||J_comp||_upper + E_J.

    A model without a running-error bound gets 0 and inf (no rigorous tier), with the reason in
    ``method``. ``X`` None skips step 2: the bounds then hold for the Jacobian AS EVALUATED
    only (used to audit step 1; the certification always passes X). ``eigenvalues``
    (ascending, from eigvalsh) only place the shifts."""
    ev = None if X is None else evaluation_error_bound(model, X, params=params)
    M = _absolute_accumulation(kernel_accumulation_length(model), K, ev)
    lo_est = None if eigenvalues is None else float(eigenvalues[0])
    hi_est = None if eigenvalues is None else float(eigenvalues[-1])
    lo = certified_lambda_min_lower(K, accumulation=M, estimate=lo_est)
    hi = certified_lambda_max_upper(K, accumulation=M, estimate=hi_est)
    method = f"{lo.method}; Gram rounding gamma_M tr(K), M = {M}"
    if X is None:
        return CertifiedSpectrum(lo.value, sqrt_up(hi.value), f"{method}; J as evaluated")
    if ev is None:
        why = evaluation_bound_refusal(model)
        return CertifiedSpectrum(
            0.0, math.inf, f"{method}; no running-error bound of the evaluation of J ({why})"
        )
    return CertifiedSpectrum(
        lambda_min_lower=corrected_lambda_min_lower(lo.value, ev.jacobian_fro),
        jacobian_norm_upper=corrected_upper(sqrt_up(hi.value), ev.jacobian_fro),
        method=f"{method}; evaluation of J and F: {ev.method}, E_J = {ev.jacobian_fro:.3g}",
        evaluation=ev,
    )


def kernel_spectrum(K: Tensor) -> Tensor:
    """Eigenvalues of the symmetric matrix K, ascending (LAPACK syevd via torch.linalg.eigvalsh)."""
    return torch.linalg.eigvalsh(K)


def initial_quantities(
    model: Model,
    data: Dataset,
    *,
    params: Tensor | None = None,
    kernel_method: KernelMethod | str = "auto",
    progress: Progress | None = None,
) -> InitialQuantities:
    """r0 = F(w) - y, L = 1/2 ||r0||^2 and the spectrum of K(w) = J J^T (THEORY.md sections 1-4).

    lambda_min(K(w0)) is lambda0 of the perturbation bounds, sqrt(lambda_max) = ||J0||_2 their
    Lipschitz constant at the centre, and kappa = lambda_max / lambda_min.
    """
    X, y = data.X, data.y
    if y.ndim != 2 or y.shape[0] != X.shape[0] or y.shape[1] != model.output_dim:
        raise ShapeMismatchError(
            f"y has shape {tuple(y.shape)}, expected ({X.shape[0]}, {model.output_dim}) "
            f"for {X.shape[0]} samples and k={model.output_dim} outputs"
        )
    prog = progress or Progress()
    F0 = outputs(model, X, params=params)
    r0 = F0 - y.to(F0).reshape(-1)
    if r0.numel() > model.n_params:
        return _underparameterized(model, X, r0, params, prog)
    # each long native call runs with cancellation polled beside it (Progress.run_blocking)
    K = prog.span(0.0, 0.4).run_blocking(
        lambda: tangent_kernel(model, X, kernel_method, params=params),
        "initial quantities: tangent kernel",
    )
    eigenvalues = prog.span(0.4, 0.8).run_blocking(
        lambda: kernel_spectrum(K), f"initial quantities: eigenvalues of K (N = {K.shape[0]})"
    )
    raw_min = float(eigenvalues[0])
    lam_min = max(raw_min, 0.0)
    lam_max = max(float(eigenvalues[-1]), 0.0)
    residual_norm = float(r0.norm())
    method = resolve_kernel_method(model, kernel_method).value
    cert = prog.span(0.8, 1.0).run_blocking(
        lambda: certified_spectrum(K, model, eigenvalues, X=X, params=params),
        "initial quantities: certified bounds",
    )
    return InitialQuantities(
        r0=r0,
        loss=0.5 * residual_norm**2,
        residual_norm=residual_norm,
        eigenvalues=eigenvalues,
        lambda_min=lam_min,
        lambda_min_raw=raw_min,
        lambda_max=lam_max,
        condition_number=lam_max / lam_min if lam_min > 0 else math.inf,
        jacobian_norm=math.sqrt(lam_max),
        n_samples=int(X.shape[0]),
        n_outputs=model.output_dim,
        N=int(r0.numel()),
        m=model.n_params,
        kernel_method=method,
        lambda_min_lower=cert.lambda_min_lower,
        jacobian_norm_upper=cert.jacobian_norm_upper,
        residual_norm_upper=cert.residual_norm_upper(r0),
        lower_bound_method=cert.method,
    )


def _underparameterized(
    model: Model, X: Tensor, r0: Tensor, params: Tensor | None, prog: Progress
) -> InitialQuantities:
    """N > m: K = J J^T has rank <= m < N, so lambda_min(K) = 0 EXACTLY (a rank argument, no
    rounding involved) and the nonzero spectrum of K is that of G = J^T J (m x m,
    :func:`plcore.kernel.parameter_gram`), assembled from chunks of Jacobian rows: K itself is
    never formed. The eigenvalues reported are G's with N - m zeros in front (K's spectrum).
    ||J||_2 <= sqrt of the certified upper bound of lambda_max(G) (the same shifted Cholesky
    with the Gram rounding of G's accumulation length), plus E_J."""
    N, m = r0.numel(), model.n_params
    n, k = int(X.shape[0]), model.output_dim
    G = prog.span(0.0, 0.6).run_blocking(
        lambda: parameter_gram(model, X, params=params, check=prog.check),
        f"initial quantities: parameter Gram J^T J (N = {N} > m = {m})",
    )
    evG = prog.span(0.6, 0.8).run_blocking(
        lambda: kernel_spectrum(G), f"initial quantities: eigenvalues of J^T J (m = {m})"
    )
    lam_max = max(float(evG[-1]), 0.0)
    eigenvalues = torch.cat([torch.zeros(N - m, dtype=evG.dtype, device=evG.device), evG])
    M = gram_accumulation_length(n, k, m)
    hi = prog.span(0.8, 1.0).run_blocking(
        lambda: certified_lambda_max_upper(G, accumulation=M, estimate=lam_max),
        "initial quantities: certified bounds",
    )
    method = f"N > m: lambda_min(K) = 0 by rank; lambda_max from J^T J ({hi.method})"
    ev = evaluation_error_bound(model, X, params=params)
    J_up = math.inf
    if ev is not None:
        J_up = corrected_upper(sqrt_up(hi.value), ev.jacobian_fro)
        method += f"; evaluation of J and F: {ev.method}, E_J = {ev.jacobian_fro:.3g}"
    cert = CertifiedSpectrum(0.0, J_up, method, ev)
    residual_norm = float(r0.norm())
    return InitialQuantities(
        r0=r0,
        loss=0.5 * residual_norm**2,
        residual_norm=residual_norm,
        eigenvalues=eigenvalues,
        lambda_min=0.0,
        lambda_min_raw=0.0,
        lambda_max=lam_max,
        condition_number=math.inf,
        jacobian_norm=math.sqrt(lam_max),
        n_samples=n,
        n_outputs=k,
        N=N,
        m=m,
        kernel_method="parameter-gram",
        lambda_min_lower=0.0,
        jacobian_norm_upper=J_up,
        residual_norm_upper=cert.residual_norm_upper(r0),
        lower_bound_method=method,
    )
