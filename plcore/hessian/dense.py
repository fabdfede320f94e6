"""Dense Hessians of the output map and a brute-force tensor norm, for tiny problems and tests.

These are the plainest possible computations, the independent check of the matrix-free
solvers in :mod:`plcore.hessian.tensor_norm`. They cost O(N m^2) memory: use them only when
N * m^2 is small (a few million entries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from plcore.errors import ResourceLimitError, ShapeMismatchError
from plcore.hessian.hvp import flat_map
from plcore.kernel._checks import resolve_params
from plcore.models.base import Model

#: refuse to form more than this many Hessian entries (N * m * m) densely
DENSE_ENTRY_LIMIT = 50_000_000


def dense_output_hessians(model: Model, X: Tensor, *, params: Tensor | None = None) -> Tensor:
    """The N x m x m tensor H_F with H_F[i] = Hess(F_i)(w) (torch.func.hessian of w -> F(w))."""
    w = resolve_params(model, params, device=X.device)
    N = int(X.shape[0]) * model.output_dim
    m = w.numel()
    if N * m * m > DENSE_ENTRY_LIMIT:
        raise ResourceLimitError(
            f"dense Hessians need N*m^2 = {N}*{m}^2 = {N * m * m} entries "
            f"(limit {DENSE_ENTRY_LIMIT})"
        )
    return torch.func.hessian(flat_map(model, X))(w)


@dataclass(frozen=True)
class BruteForceResult:
    """sup_{|a|=1} ||sum_i a_i H_i||_2 found by exhaustive search.

    Attributes:
        value: the best ||M(a)||_2 found (a lower bound of the sup, tight for a fine search).
        a: the maximising unit vector.
        method: ``"grid(circle)"`` for N <= 2, else ``"multistart-lbfgs"``.
        evaluations: number of dense eigenvalue problems solved.
    """

    value: float
    a: Tensor
    method: str
    evaluations: int


def _spectral_norm(H: Tensor, a: Tensor) -> Tensor:
    M = torch.einsum("i,ijk->jk", a, H)
    return torch.linalg.eigvalsh(M).abs().max()


def _circle(H: Tensor, points: int) -> BruteForceResult:
    N = H.shape[0]
    if N == 1:
        a = torch.ones(1, dtype=H.dtype, device=H.device)
        return BruteForceResult(float(_spectral_norm(H, a)), a, "grid(circle)", 1)
    # ||M(-a)|| = ||M(a)||, so half the circle suffices; refine the best cell twice.
    lo, hi = 0.0, math.pi
    best_t, best = 0.0, -1.0
    evaluations = 0
    for _ in range(3):
        ts = torch.linspace(lo, hi, points + 1, dtype=H.dtype, device=H.device)
        A = torch.stack([torch.cos(ts), torch.sin(ts)], dim=1)
        Ms = torch.einsum("gi,ijk->gjk", A, H)
        vals = torch.linalg.eigvalsh(Ms).abs().amax(dim=1)
        evaluations += points + 1
        j = int(vals.argmax())
        if float(vals[j]) > best:
            best, best_t = float(vals[j]), float(ts[j])
        step = (hi - lo) / points
        lo, hi = best_t - step, best_t + step
    a = torch.tensor([math.cos(best_t), math.sin(best_t)], dtype=H.dtype, device=H.device)
    return BruteForceResult(best, a, "grid(circle)", evaluations)


def brute_force_tensor_norm(
    H: Tensor, *, generator: torch.Generator, n_starts: int = 64, grid_points: int = 4000
) -> BruteForceResult:
    """sup_{|a|=1} ||sum_i a_i H_i||_2 for a dense N x m x m stack of symmetric matrices.

    This is ||H_F|| = sup_{|a|=1,|u|=1} a . H_F[u, u] (THEORY.md section 1) computed without the
    alternating power method: for N <= 2 on a grid of the half circle (refined twice around the
    best cell), otherwise by L-BFGS on f(a) = ||M(a / |a|)||_2 from ``n_starts`` random starts.
    The gradient of f where the top |eigenvalue| lambda (eigenvector v) is simple is
    sign(lambda) (v^T H_i v)_i projected onto the tangent space of the sphere.
    """
    if H.ndim != 3 or H.shape[1] != H.shape[2]:
        raise ShapeMismatchError(f"H must have shape (N, m, m), got {tuple(H.shape)}")
    if H.shape[0] <= 2:
        return _circle(H, grid_points)
    Hn = H.detach().cpu().numpy()
    evaluations = 0

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evaluations
        evaluations += 1
        norm = float(np.linalg.norm(x))
        a = x / norm
        lam, vec = np.linalg.eigh(np.einsum("i,ijk->jk", a, Hn))
        j = int(np.argmax(np.abs(lam)))
        v = vec[:, j]
        g = np.sign(lam[j]) * np.einsum("j,ijk,k->i", v, Hn, v)
        g = (g - (g @ a) * a) / norm
        return -abs(float(lam[j])), -g

    best_val, best_a = -1.0, np.zeros(H.shape[0])
    starts = torch.randn(n_starts, H.shape[0], generator=generator, dtype=torch.float64)
    from scipy.optimize import minimize  # 0.6 s to import: only where it is used

    for x0 in starts.numpy():
        res = minimize(objective, x0, jac=True, method="L-BFGS-B", options={"gtol": 1e-12})
        if -res.fun > best_val:
            best_val, best_a = float(-res.fun), res.x / np.linalg.norm(res.x)
    a = torch.as_tensor(best_a, dtype=H.dtype, device=H.device)
    return BruteForceResult(best_val, a, "multistart-lbfgs", evaluations)
