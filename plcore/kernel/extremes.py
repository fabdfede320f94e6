"""One-sided extreme eigenvalues of a kernel matrix without a full eigendecomposition.

For an N x N symmetric positive definite K (a tangent kernel at a probe point):

* lambda_max: Lanczos on v -> K v (N^2 per product);
* lambda_min: Lanczos on v -> K^{-1} v through one Cholesky factorisation K = L L^T (N^3 / 3,
  several times cheaper than ``eigvalsh``) and two triangular solves per product (N^2): the
  top eigenvalue of K^{-1} is 1 / lambda_min(K) and is well separated whenever lambda_min is.

Both values are then recomputed as Rayleigh quotients v^T K v of the unit Ritz vectors, so
whatever the solver accuracy, ``lambda_min_upper`` >= lambda_min(K) and ``lambda_max_lower`` <=
lambda_max(K) (Courant-Fischer): exactly the one-sided estimates that ball probes need
(mu_upper, L_F_lower; :mod:`plcore.estimate.probes`). Never a proof of anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from plcore.errors import ShapeMismatchError
from plcore.hessian.lanczos import Check, top_abs_eigenpair


@dataclass(frozen=True)
class KernelExtremes:
    """lambda_min_upper >= lambda_min(K), lambda_max_lower <= lambda_max(K) (Rayleigh quotients);
    method: ``"cholesky-lanczos"`` or ``"eigvalsh"`` (K not numerically positive definite, or
    small); converged: both Lanczos solves met their tolerance (always True for eigvalsh);
    min_vector: the unit vector whose Rayleigh quotient is ``lambda_min_upper``."""

    lambda_min_upper: float
    lambda_max_lower: float
    method: str
    converged: bool
    min_vector: Tensor | None = None


def kernel_extremes(
    K: Tensor,
    *,
    generator: torch.Generator,
    tol: float = 1e-8,
    krylov_dim: int = 30,
    dense_below: int = 512,
    check: Check | None = None,
) -> KernelExtremes:
    """lambda_min and lambda_max of the symmetric K, one-sided (module docstring).

    K of order < ``dense_below`` (``eigvalsh`` is then cheap and exact) or whose Cholesky
    factorisation fails (lambda_min <= ~0) goes to ``eigvalsh``.
    """
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ShapeMismatchError(f"K must be square, got shape {tuple(K.shape)}")
    order = K.shape[0]
    if order < dense_below:
        return _dense(K)
    L, info = torch.linalg.cholesky_ex(K)
    if int(info) != 0:
        return _dense(K)
    v0 = torch.randn(order, generator=generator, dtype=torch.float64).to(K)

    def inv(v: Tensor) -> Tensor:
        return torch.cholesky_solve(v.unsqueeze(1), L).squeeze(1)

    small = top_abs_eigenpair(inv, v0, krylov_dim=krylov_dim, tol=tol, check=check)
    big = top_abs_eigenpair(lambda v: K @ v, v0, krylov_dim=krylov_dim, tol=tol, check=check)
    lo = float(small.vector @ (K @ small.vector))
    hi = float(big.vector @ (K @ big.vector))
    return KernelExtremes(
        lo, hi, "cholesky-lanczos", small.converged and big.converged, small.vector
    )


def _dense(K: Tensor) -> KernelExtremes:
    ev, vecs = torch.linalg.eigh(K)
    return KernelExtremes(float(ev[0]), float(ev[-1]), "eigvalsh", True, vecs[:, 0])
