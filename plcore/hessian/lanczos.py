"""The eigenpair of largest |lambda| of a symmetric operator given by its matvec (Lanczos).

Explicitly restarted Lanczos with full reorthogonalisation, repeated when the DGKS test asks
(Golub & Van Loan, "Matrix Computations", 4th ed., sections 5.2.8 and 10.1): build an
orthonormal Krylov basis Q of dimension k, take the Ritz pair (theta, y = Q s) of the
tridiagonal T = Q^T M Q with the largest |theta|, and restart from y until the residual
||M y - theta y|| = beta_k |s_k| is below ``tol * |theta|``. Runs on the device and dtype
of the start vector.

One (k + 1) x m basis is allocated per solve and reused by every restart (rows are overwritten),
so a solve costs one allocation whatever the number of restarts. A ``check`` callable (e.g.
:meth:`plcore.progress.Progress.check`) is called before every operator application, so a
cancellation is seen within one matvec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Matvec = Callable[[Tensor], Tensor]
Check = Callable[[], None]

#: DGKS threshold: reorthogonalise again when a pass kept less than this fraction of the norm
REORTH_ETA = 2.0**-0.5


@dataclass(frozen=True)
class EigenPair:
    """theta: the Ritz value of largest |theta|; vector: unit Ritz vector; residual:
    ||M y - theta y|| (exact-arithmetic identity beta_k |s_k|); converged: residual <= tol |theta|;
    matvecs: operator applications used."""

    theta: float
    vector: Tensor
    residual: float
    converged: bool
    matvecs: int


def top_abs_eigenpair(
    matvec: Matvec,
    v0: Tensor,
    *,
    krylov_dim: int = 40,
    tol: float = 1e-10,
    max_restarts: int = 20,
    check: Check | None = None,
) -> EigenPair:
    """Largest-|lambda| eigenpair of the symmetric operator ``matvec`` of dimension v0.numel().

    ``max_restarts=0`` gives one Krylov cycle of at most ``krylov_dim`` matvecs (an inexact
    solve, used inside the alternating power method); ``check`` runs before every matvec.
    """
    m = v0.numel()
    k = max(1, min(krylov_dim, m))
    q = v0 / v0.norm()
    matvecs = 0
    theta, y, residual = 0.0, q, float("inf")
    Q = torch.empty(k + 1, m, dtype=v0.dtype, device=v0.device)
    for _ in range(max_restarts + 1):
        Q[0] = q
        alphas: list[float] = []
        betas: list[float] = []
        scale = 0.0
        for j in range(k):
            if check is not None:
                check()
            w = matvec(Q[j]).clone()  # owned: reorthogonalised in place below
            matvecs += 1
            alpha = float(Q[j] @ w)
            alphas.append(alpha)
            # full reorthogonalisation; a second pass only when the first removed most of w
            # (the DGKS criterion, Daniel, Gragg, Kaufman & Stewart 1976: ||w'|| < ||w|| / sqrt 2).
            # On long vectors (m ~ 10^6) each pass reads the whole basis, often more than a matvec.
            # In place: two passes over the basis (one GEMV each) and no temporary of length m.
            basis = Q[: j + 1]
            before = float(w.norm())
            w.addmv_(basis.T, basis @ w, alpha=-1.0)
            beta = float(w.norm())
            if beta < REORTH_ETA * before:
                w.addmv_(basis.T, basis @ w, alpha=-1.0)
                beta = float(w.norm())
            betas.append(beta)
            scale = max(scale, abs(alpha) + beta)
            breakdown = beta <= 1e-14 * scale
            # test the Ritz residual every few steps: a warm start often converges early
            if breakdown or j == k - 1 or j % 4 == 3:
                theta, s = _top_ritz(alphas, betas)
                residual = 0.0 if breakdown else beta * abs(float(s[-1]))
                y = Q[: j + 1].T @ s.to(device=v0.device, dtype=v0.dtype)
                y = y / y.norm()
                if scale == 0.0 or residual <= tol * abs(theta):
                    return EigenPair(theta, y, residual, True, matvecs)
                if breakdown or j == k - 1:
                    break
            torch.div(w, beta, out=Q[j + 1])
        q = y
    return EigenPair(theta, y, residual, False, matvecs)


def _top_ritz(alphas: list[float], betas: list[float]) -> tuple[float, Tensor]:
    """Ritz value of largest |theta| of the tridiagonal (alphas, betas[:-1]) and its vector."""
    n = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if n > 1:
        off = torch.tensor(betas[: n - 1], dtype=torch.float64)
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    evals, evecs = torch.linalg.eigh(T)
    idx = int(evals.abs().argmax())
    return float(evals[idx]), evecs[:, idx]
