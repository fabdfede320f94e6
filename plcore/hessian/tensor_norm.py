"""Norms of the Hessian tensor H_F of the output map (THEORY.md section 1).

* :func:`hessian_tensor_norm`      ||H_F|| = sup_{|a|=1,|u|=1} a . H_F[u, u]
                                           = sup_{|a|=1} ||sum_i a_i Hess(F_i)||_2
* :func:`max_output_hessian_norm`  max_i ||Hess(F_i)||_2  (the weaker quantity of the paper's
                                   wide-network bounds, Liu, Zhu & Belkin 2022, section 4)

Both are matrix-free (Hessian-vector products from :mod:`plcore.hessian.hvp`) and both are
LOWER bounds of the quantity they name: every value they return is attained at an explicit
feasible point (a, u) or output i, and the solver may miss a larger local maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from plcore.errors import OptionsError
from plcore.hessian.hvp import _n_outputs, output_hvp, second_directional
from plcore.hessian.lanczos import top_abs_eigenpair
from plcore.kernel import vjp
from plcore.kernel._checks import resolve_params
from plcore.models.base import Model


@dataclass(frozen=True)
class TensorNormResult:
    """The alternating power method's estimate of ||H_F||.

    Attributes:
        value: ||H_F[u, u]||_2 = a . H_F[u, u] at the returned unit (a, u): best over restarts.
            Always a LOWER bound of the true sup (``is_lower_bound``).
        a: unit vector in R^N (outputs), a = H_F[u, u] / ||H_F[u, u]||.
        u: unit vector in R^m (parameters).
        converged: the best restart met the stopping rule (relative change < tol between
            consecutive outer iterations and the inner Lanczos residual <= tol |lambda|).
        iterations: outer iterations of the best restart.
        restarts: number of starts tried (one deterministic, the rest seeded random).
        spread: (max - min) / max of the values the restarts reached; 0 means all agreed.
        method: ``"alternating-power(lanczos)"``.
        is_lower_bound: always True.
        values: the value reached by each restart, in order.
        matvecs: Hessian-vector products used in total.
    """

    value: float
    a: Tensor
    u: Tensor
    converged: bool
    iterations: int
    restarts: int
    spread: float
    method: str = "alternating-power(lanczos)"
    is_lower_bound: bool = True
    values: tuple[float, ...] = ()
    matvecs: int = 0


@dataclass(frozen=True)
class OutputHessianNormResult:
    """max_i ||Hess(F_i)||_2 by Lanczos on each scanned output.

    Attributes:
        value: the largest |eigenvalue| found, over the scanned outputs (a lower bound when
            ``exhaustive`` is False or a solve did not converge).
        index: the output i (sample-major: sample i // k, output i % k) attaining it.
        converged: every Lanczos solve met its residual tolerance.
        iterations: Hessian-vector products used in total.
        method: ``"lanczos(per-output)"``.
        exhaustive: all N outputs were scanned.
        scanned: how many outputs were scanned.
        vector: unit top eigenvector of Hess F_index (a good start for the tensor norm).
    """

    value: float
    index: int
    converged: bool
    iterations: int
    method: str = "lanczos(per-output)"
    exhaustive: bool = True
    scanned: int = 0
    vector: Tensor | None = None


def _hvp_at(model: Model, X: Tensor, w: Tensor, a: Tensor, v: Tensor) -> Tensor:
    return output_hvp(model, X, a, v, params=w)


def _unit(v: Tensor) -> Tensor:
    return v / v.norm()


def _check_options(restarts: int, tol: float, max_iter: int) -> None:
    if restarts < 1 or max_iter < 1 or not tol > 0:
        raise OptionsError(
            f"need restarts >= 1, max_iter >= 1 and tol > 0; got restarts={restarts}, "
            f"max_iter={max_iter}, tol={tol}"
        )


def hessian_tensor_norm(
    model: Model,
    X: Tensor,
    *,
    params: Tensor | None = None,
    generator: torch.Generator,
    restarts: int = 4,
    tol: float = 1e-10,
    max_iter: int = 500,
    krylov_dim: int = 40,
    warm_starts: Sequence[Tensor] = (),
) -> TensorNormResult:
    """||H_F|| = sup_{|a|=1,|u|=1} a . H_F[u, u] = sup_{|a|=1} ||M(a)||_2, M(a) = sum a_i Hess F_i.

    Alternating maximisation ("higher-order power method", De Lathauwer et al. 2000, for the
    partially symmetric tensor H_F): for fixed u the best a is s / ||s|| with s = H_F[u, u]
    (:func:`second_directional`), value ||s||; for fixed a the best u is the eigenvector of M(a)
    of largest |lambda| (Lanczos on :func:`output_hvp`; when that lambda < 0 the sign of a is
    flipped, so the value stays positive). Neither half-step decreases the value, so each restart
    climbs to a local maximum. The landscape has several, so one deterministic start
    (u = J^T 1 / ||J^T 1||), the caller's ``warm_starts`` (e.g. the top eigenvector of the output
    Hessian of largest norm, which makes the result >= max_i ||Hess F_i||) and seeded random
    starts up to ``restarts`` in all are run, and the best is kept.

    The returned value is ||H_F[u, u]|| recomputed at the final unit u: a feasible point, hence a
    LOWER bound of the true sup (``is_lower_bound=True``). ``spread`` tells how much the restarts
    disagreed.
    """
    _check_options(restarts, tol, max_iter)
    w = resolve_params(model, params, device=X.device)
    m, N = w.numel(), _n_outputs(model, X)

    starts: list[Tensor] = []
    g = vjp(model, X, torch.ones(N, dtype=w.dtype, device=w.device), params=w)
    if float(g.norm()) > 0:
        starts.append(_unit(g))
    starts.extend(_unit(v.to(w.device, torch.float64)) for v in warm_starts if float(v.norm()) > 0)
    while len(starts) < restarts:
        r = torch.randn(m, generator=generator, dtype=torch.float64).to(w.device)
        starts.append(_unit(r))

    best: tuple[float, Tensor, Tensor, bool, int] | None = None
    values: list[float] = []
    matvecs = 0
    for u0 in starts:
        u = u0
        prev = -1.0
        converged = False
        iterations = 0
        for iterations in range(1, max_iter + 1):  # noqa: B007 (used after the loop)
            s = second_directional(model, X, u, params=w)
            ns = float(s.norm())
            if ns == 0.0:
                converged = True
                break
            a = s / ns
            # Warm start from u, mixed with a random direction: started on (or near) an
            # eigenvector that is not the top one, Lanczos would stop there (invariant subspace)
            # and the iteration would stall at a saddle point.
            noise = _unit(torch.randn(m, generator=generator, dtype=torch.float64).to(w.device))
            pair = top_abs_eigenpair(
                partial(_hvp_at, model, X, w, a),
                u + noise,
                krylov_dim=krylov_dim,
                tol=tol,
            )
            matvecs += pair.matvecs
            u = pair.vector
            value = abs(pair.theta)
            if abs(value - prev) <= tol * max(value, 1e-300) and pair.converged:
                converged = True
                break
            prev = value
        s = second_directional(model, X, u, params=w)
        ns = float(s.norm())
        a = s / ns if ns > 0 else torch.zeros_like(s)
        values.append(ns)
        if best is None or ns > best[0]:
            best = (ns, a, u, converged, iterations)
    assert best is not None
    top = max(values)
    spread = (top - min(values)) / top if top > 0 else 0.0
    return TensorNormResult(
        value=best[0],
        a=best[1],
        u=best[2],
        converged=best[3],
        iterations=best[4],
        restarts=len(starts),
        spread=spread,
        values=tuple(values),
        matvecs=matvecs,
    )


def max_output_hessian_norm(
    model: Model,
    X: Tensor,
    *,
    params: Tensor | None = None,
    generator: torch.Generator,
    scan_limit: int = 64,
    n_probe: int = 4,
    tol: float = 1e-10,
    krylov_dim: int = 40,
) -> OutputHessianNormResult:
    """max_i ||Hess(F_i)||_2, each by Lanczos on v -> output_hvp(e_i, v) (largest |lambda|).

    All N outputs are scanned when N <= ``scan_limit`` (``exhaustive=True``). Otherwise the
    ``scan_limit`` outputs with the largest max_j |u_j^T Hess(F_i) u_j| over ``n_probe`` random
    unit u_j (one :func:`second_directional` pass each) are scanned, and the result is a lower
    bound (``exhaustive=False``).
    """
    if scan_limit < 1 or n_probe < 1:
        raise OptionsError(f"need scan_limit >= 1 and n_probe >= 1, got {scan_limit}, {n_probe}")
    w = resolve_params(model, params, device=X.device)
    m, n_out = w.numel(), _n_outputs(model, X)
    if n_out <= scan_limit:
        candidates = list(range(n_out))
    else:
        score = torch.zeros(n_out, dtype=w.dtype, device=w.device)
        for _ in range(n_probe):
            u = _unit(torch.randn(m, generator=generator, dtype=torch.float64).to(w.device))
            score = torch.maximum(score, second_directional(model, X, u, params=w).abs())
        candidates = [int(i) for i in torch.argsort(score, descending=True)[:scan_limit]]
    best_value, best_index = -1.0, -1
    best_vector: Tensor | None = None
    converged = True
    iterations = 0
    for i in candidates:
        e = torch.zeros(n_out, dtype=w.dtype, device=w.device)
        e[i] = 1.0
        v0 = _unit(torch.randn(m, generator=generator, dtype=torch.float64).to(w.device))
        pair = top_abs_eigenpair(
            partial(_hvp_at, model, X, w, e),
            v0,
            krylov_dim=krylov_dim,
            tol=tol,
        )
        iterations += pair.matvecs
        converged = converged and pair.converged
        if abs(pair.theta) > best_value:
            best_value, best_index, best_vector = abs(pair.theta), i, pair.vector
    return OutputHessianNormResult(
        value=best_value,
        index=best_index,
        converged=converged,
        iterations=iterations,
        exhaustive=len(candidates) == n_out,
        scanned=len(candidates),
        vector=best_vector,
    )
