"""Eigenvalue bounds of a Gram matrix that hold in floating point (docs/theory.md, section 15).

The rigorous tier needs lambda0 = lambda_min(K) from BELOW and ||J||_2 = sqrt(lambda_max(K)) from
ABOVE, for the exact Gram matrix K = J J^T of the Jacobian J that was evaluated, although K itself
is only available as a floating-point matrix fl(K). A raw ``eigvalsh`` minimum is neither: it is
off by rounding in both directions. Instead:

* **Cholesky with a shift** (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
  2002, Theorem 10.3, after Demmel 1989): if Cholesky of a symmetric floating-point n x n matrix A
  runs to completion, the computed factor R satisfies R^T R = A + dA with
  |dA| <= gamma_{n+1} |R^T| |R| entrywise (used as gamma_{4(n+1)}: :data:`CHOLESKY_FACTOR`),
  gamma_k = k u / (1 - k u), u = 2^-53. Since
  (|R^T||R|)_ii = (R^T R)_ii <= A_ii / (1 - gamma_{n+1}) and || |R^T||R| ||_2 <= ||R||_F^2 =
  sum_i (R^T R)_ii, ||dA||_2 <= gamma_{n+1} tr+(A) / (1 - gamma_{n+1}), and A + dA = R^T R >= 0
  gives lambda_min(A) >= -||dA||_2.
* **The Gram product** (Higham, eq. (3.5), any summation order, with or without FMA): an entry of
  fl(K) that is a sum of at most M products satisfies |fl(K)_ij - K_ij| <= gamma_M |J_i| . |J_j|
  <= gamma_M ||J_i|| ||J_j|| (Cauchy-Schwarz), so ||fl(K) - K||_2 <= gamma_M ||d||^2 = gamma_M
  tr(K), d_i = ||J_i||, and tr(K) <= tr(fl K) / (1 - gamma_M). The structured kernel forms each
  entry as sums over layers of products of two shorter dot products; the same bound holds with M
  at least the longest chain of roundings in any entry (:func:`accumulation_length`).
* **The shift** A = fl(fl(K) - s I) (or fl(s I - fl(K))) rounds each diagonal entry once:
  ||A - (fl(K) - s I)||_2 <= u / (1 - u) max_i |A_ii|.

So if Cholesky of A = fl(fl(K) - s I) succeeds, lambda_min(K) >= s - margin with
margin = gamma_{n+1} tr+(A) / (1 - gamma_{n+1}) + u max|A_ii| / (1 - u) + gamma_M tr(K)_upper,
and symmetrically Cholesky of fl(s I - fl(K)) gives lambda_max(K) <= s + margin. Every margin is
computed in float64 and then enlarged (:func:`_up`) so that rounding in the margin's own
evaluation (a few dozen operations on non-negative numbers) is covered. Cholesky costs n^3 / 3
flops, a third of an eigenvalue decomposition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import torch
from torch import Tensor

from plcore.errors import ShapeMismatchError

#: unit roundoff of float64 (round to nearest)
U64: Final = 2.0**-53
#: gamma_{n+1} of Theorem 10.3 is used as gamma_{4(n+1)}: LAPACK's blocked dpotrf orders the same
#: inner products differently (Higham 2002, section 10.1: the bound does not depend on the order);
#: the factor 4 is insurance that costs nothing at these sizes
CHOLESKY_FACTOR: Final = 4
#: relative enlargement of a computed margin: covers the rounding of the margin's own formula
_MARGIN_SLACK: Final = 1e-6


def gamma(k: int) -> float:
    """gamma_k = k u / (1 - k u), u = 2^-53 (Higham 2002, Lemma 3.1); inf when k u >= 1/2."""
    ku = k * U64
    return math.inf if ku >= 0.5 else ku / (1.0 - ku)


def _up(x: float) -> float:
    """x enlarged past any rounding of a short non-negative computation (relative 1e-6 + 1 ulp)."""
    return math.nextafter(x * (1.0 + _MARGIN_SLACK), math.inf)


def _down(x: float) -> float:
    return math.nextafter(x, -math.inf)


def accumulation_length(n_params: int, n_modules: int = 0) -> int:
    """M, the longest chain of roundings in one entry of a kernel K = J J^T with m parameters:
    m products summed (reference kernel), or per layer two dot products of lengths at most m
    multiplied and summed over the layers (structured kernel), plus the symmetrization
    (K + K^T) / 2. M = m + 4 (modules + 2) bounds both."""
    return int(n_params) + 4 * (int(n_modules) + 2)


@dataclass(frozen=True)
class EigenBound:
    """A one-sided bound on an extreme eigenvalue of the exact Gram matrix (module docstring).

    Attributes:
        value: the bound (lambda_min >= value, or lambda_max <= value); for a lower bound 0.0
            when nothing positive could be certified (``certified`` False).
        certified: a Cholesky factorization succeeded and ``value`` carries the margin.
        shift: the shift s of the successful factorization.
        margin: the backward-error margin added to s (lambda_max) or subtracted (lambda_min).
        attempts: factorizations tried.
        method: how the bound was obtained, for reports.
    """

    value: float
    certified: bool
    shift: float
    margin: float
    attempts: int
    method: str = "shifted Cholesky with backward-error margin (Higham 2002, Thm 10.3)"


def _check_square(K: Tensor) -> int:
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ShapeMismatchError(f"K must be a square matrix, got shape {tuple(K.shape)}")
    return int(K.shape[0])


def gram_error_bound(K: Tensor, accumulation: int) -> float:
    """||fl(K) - J J^T||_2 <= gamma_M tr(J J^T) <= gamma_M tr(fl K) / (1 - gamma_M), enlarged."""
    n = _check_square(K)
    gM = gamma(accumulation)
    tr = float(K.diagonal().clamp(min=0).sum()) * (1.0 + gamma(n))
    return _up(gM * tr / (1.0 - gM))


def _cholesky_margin(A: Tensor) -> float | None:
    """None if Cholesky of A fails; else gamma_{n+1} tr+(A)/(1 - gamma_{n+1}) + u max|A_ii|/(1-u),
    enlarged (module docstring)."""
    n = int(A.shape[0])
    _, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        return None
    diag = A.diagonal()
    g = gamma(CHOLESKY_FACTOR * (n + 1))
    tr = float(diag.clamp(min=0).sum()) * (1.0 + gamma(n))
    shift_err = U64 / (1.0 - U64) * float(diag.abs().max())
    return _up(g * tr / (1.0 - g) + shift_err)


def _shifted(K: Tensor, s: float, side: Literal["min", "max"]) -> Tensor:
    eye = torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
    return K - s * eye if side == "min" else s * eye - K


def cholesky_certifies(K: Tensor, s: float, *, accumulation: int) -> float | None:
    """lambda_min(J J^T) >= the returned value when Cholesky of fl(fl(K) - s I) succeeds (None
    otherwise); the value is s minus the margin of the module docstring, rounded down."""
    _check_square(K)
    m = _cholesky_margin(_shifted(K.to(torch.float64), s, "min"))
    if m is None:
        return None
    return _down(_down(s - m) - gram_error_bound(K, accumulation))


def certified_lambda_min_lower(
    K: Tensor, *, accumulation: int, estimate: float | None = None, max_attempts: int = 60
) -> EigenBound:
    """A lower bound of lambda_min(J J^T) that holds in floating point (module docstring).

    Args:
        K: fl(K), the computed n x n Gram matrix (float64; only its lower triangle is read by
            the factorization, its diagonal by the margins).
        accumulation: M of :func:`accumulation_length` for the method that formed K.
        estimate: the computed smallest eigenvalue (eigvalsh); computed when None.

    The shift is s = estimate - e with e the margin of a trial factorization, then the gap to
    the estimate is doubled until Cholesky succeeds or s <= 0. The result is within about 2e of
    the estimate, e ~ (n + M) u tr(K). Returns value 0.0, certified False, on a singular or
    indefinite K (nothing positive can be certified).
    """
    n = _check_square(K)
    K = K.to(torch.float64)
    lam = float(torch.linalg.eigvalsh(K)[0]) if estimate is None else float(estimate)
    gram = gram_error_bound(K, accumulation)
    # the margin at s ~ lambda: depends on s only through the diagonal, so one guess suffices
    base = _up(
        gamma(CHOLESKY_FACTOR * (n + 1))
        * float(K.diagonal().clamp(min=0).sum())
        * (1.0 + gamma(n))
        * 1.01
    )
    gap = base + gram + U64 * float(K.diagonal().abs().max()) * 2.0
    attempts = 0
    while attempts < max_attempts:
        s = lam - gap
        if not s > 0:
            break
        attempts += 1
        lower = cholesky_certifies(K, s, accumulation=accumulation)
        if lower is not None and lower > 0:
            return EigenBound(lower, True, s, s - lower, attempts)
        gap *= 2.0
    return EigenBound(0.0, False, 0.0, math.inf, attempts)


def certified_lambda_max_upper(
    K: Tensor, *, accumulation: int, estimate: float | None = None, max_attempts: int = 60
) -> EigenBound:
    """An upper bound of lambda_max(J J^T) that holds in floating point: Cholesky of
    fl(s I - fl(K)) succeeds for s = estimate + gap (gap doubled until it does), then
    lambda_max <= s + margin, rounded up (module docstring)."""
    n = _check_square(K)
    K = K.to(torch.float64)
    lam = float(torch.linalg.eigvalsh(K)[-1]) if estimate is None else float(estimate)
    lam = max(lam, 0.0)
    gram = gram_error_bound(K, accumulation)
    scale = max(lam, float(K.diagonal().abs().max()), 1e-300)
    gap = _up(gamma(CHOLESKY_FACTOR * (n + 1)) * n * scale * 2.0) + gram
    attempts = 0
    while attempts < max_attempts:
        s = lam + gap
        attempts += 1
        m = _cholesky_margin(_shifted(K, s, "max"))
        if m is not None:
            upper = math.nextafter(math.nextafter(s + m, math.inf) + gram, math.inf)
            return EigenBound(upper, True, s, upper - s, attempts)
        gap *= 2.0
    return EigenBound(math.inf, False, math.nan, math.inf, attempts)


def sqrt_up(x: float) -> float:
    """sqrt(x) rounded up: math.sqrt is correctly rounded (IEEE 754), one ulp more covers it."""
    return math.nextafter(math.sqrt(max(x, 0.0)), math.inf)


def norm_upper(v: Tensor) -> float:
    """An upper bound of the exact ||v||_2 of the stored vector v: the computed sum of N squares
    has relative error <= gamma_{N+1} (Higham eq. (3.5)), the square root one more rounding."""
    N = int(v.numel())
    s = float((v.to(torch.float64) ** 2).sum())
    return sqrt_up(s * (1.0 + gamma(N + 1)) / (1.0 - U64) * (1.0 + U64))


def spectral_norm_upper(W: Tensor, *, estimate: float | None = None) -> float:
    """||W||_2 <= sqrt(lambda_max(G)) for the Gram matrix G of W's smaller side, bounded by
    :func:`certified_lambda_max_upper` (accumulation: the longer side); inf if it fails."""
    W = W.detach().to(torch.float64)
    if W.ndim != 2:
        raise ShapeMismatchError(f"W must be a matrix, got shape {tuple(W.shape)}")
    a, b = int(W.shape[0]), int(W.shape[1])
    G = W @ W.T if a <= b else W.T @ W
    est = None if estimate is None else estimate * estimate
    bound = certified_lambda_max_upper(G, accumulation=max(a, b) + 2, estimate=est)
    return sqrt_up(bound.value) if bound.certified else math.inf
