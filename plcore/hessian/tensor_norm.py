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
from plcore.hessian._climb import Climb, Ticker, hvp_at, unit
from plcore.hessian.hvp import _n_outputs, second_directional
from plcore.hessian.lanczos import EigenPair, top_abs_eigenpair
from plcore.kernel import vjp
from plcore.kernel._checks import resolve_params
from plcore.models.base import Model
from plcore.progress import Progress


@dataclass(frozen=True)
class TensorNormResult:
    """The alternating power method's estimate of ||H_F||.

    Attributes:
        value: ||H_F[u, u]||_2 = a . H_F[u, u] at the returned unit (a, u): best over restarts.
            Always a LOWER bound of the true sup (``is_lower_bound``).
        a: unit vector in R^N (outputs), a = H_F[u, u] / ||H_F[u, u]||.
        u: unit vector in R^m (parameters).
        converged: the best restart met the stopping rule (relative change <= tol between
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


def _check_options(restarts: int, tol: float, max_iter: int) -> None:
    if restarts < 1 or max_iter < 1 or not tol > 0:
        raise OptionsError(
            f"need restarts >= 1, max_iter >= 1 and tol > 0; got restarts={restarts}, "
            f"max_iter={max_iter}, tol={tol}"
        )


def _starts(
    model: Model,
    X: Tensor,
    w: Tensor,
    generator: torch.Generator,
    restarts: int,
    warm_starts: Sequence[Tensor],
    default_start: bool,
) -> list[Tensor]:
    m, N = w.numel(), _n_outputs(model, X)
    starts: list[Tensor] = []
    if default_start:
        g = vjp(model, X, torch.ones(N, dtype=w.dtype, device=w.device), params=w)
        if float(g.norm()) > 0:
            starts.append(unit(g))
    starts.extend(unit(v.to(w.device, torch.float64)) for v in warm_starts if float(v.norm()) > 0)
    while len(starts) < restarts:
        r = torch.randn(m, generator=generator, dtype=torch.float64).to(w.device)
        starts.append(unit(r))
    return starts


def hessian_tensor_norm(
    model: Model,
    X: Tensor,
    *,
    params: Tensor | None = None,
    generator: torch.Generator,
    restarts: int = 4,
    tol: float = 1e-10,
    max_iter: int = 500,
    krylov_dim: int = 10,
    warm_starts: Sequence[Tensor] = (),
    default_start: bool = True,
    race_iter: int = 2,
    progress: Progress | None = None,
    stage: str = "hessian norm",
) -> TensorNormResult:
    """||H_F|| = sup_{|a|=1,|u|=1} a . H_F[u, u] = sup_{|a|=1} ||M(a)||_2, M(a) = sum a_i Hess F_i.

    Alternating maximisation ("higher-order power method", De Lathauwer et al. 2000, for the
    partially symmetric tensor H_F): for fixed u the best a is s / ||s|| with s = H_F[u, u]
    (:func:`second_directional`), value ||s||; for fixed a the best u is the eigenvector of M(a)
    of largest |lambda| (Lanczos on :func:`output_hvp`; when that lambda < 0 the sign of a is
    flipped, so the value stays positive).

    Inexact inner solves: each outer iteration runs ONE Lanczos cycle of at most ``krylov_dim``
    Hessian-vector products, warm-started from the previous u plus a random kick (started on an
    eigenvector that is not the top one, Lanczos would stop there and the iteration would stall
    at a saddle point). The kick has relative size 0.1 on the first iteration, then the last
    inner relative residual (clipped to [0.01 tol, 0.1]), so it never undoes the progress made;
    each cycle is stopped early at the residual tolerance
    max(tol, min(1e-2, 0.1 * relative change of the outer value)), which tightens as the outer
    iteration converges. Consecutive operators M(a) differ little near convergence, so the
    cycles together act as one restarted Lanczos run (inexact alternating maximisation).
    Stopping rule of a start: the outer value changed by <= tol (relative) and the last inner
    Ritz residual is <= tol |lambda| (both on the same iteration), or ``max_iter`` iterations.

    Starts: one deterministic (u = J^T 1 / ||J^T 1||, unless ``default_start`` is False), the
    caller's ``warm_starts`` (e.g. the top eigenvector of the output Hessian of largest norm,
    which makes the result >= max_i ||Hess F_i||, or the solution at a nearby point) and seeded
    random starts up to ``restarts`` in all. They race: every start climbs ``race_iter``
    iterations, then the one with the best value so far continues, up to ``max_iter``; when it
    converges before that, the next best takes its remaining iterations (``values`` holds what
    each start reached; ``iterations`` counts the best one's).

    The returned value is ||H_F[u, u]|| at the best unit u ever visited (every outer iteration
    evaluates one): a feasible point, hence a LOWER bound of the true sup
    (``is_lower_bound=True``), whatever the inner accuracy. ``spread`` tells how much the
    restarts disagreed. ``progress`` (optional) receives "STAGE: restart r/R, iteration t" and
    is checked for cancellation before every Hessian-vector product.
    """
    _check_options(restarts, tol, max_iter)
    prog = progress or Progress()
    w = resolve_params(model, params, device=X.device)
    starts = _starts(model, X, w, generator, restarts, warm_starts, default_start)

    R = len(starts)
    race = min(race_iter, max_iter) if R > 1 else max_iter
    total = R * race + (max_iter - race)
    climbs = [
        Climb(model, X, w, u0, f"{stage}: restart {r + 1}/{R}", generator, tol, krylov_dim)
        for r, u0 in enumerate(starts)
    ]
    done = 0

    def advance(c: Climb) -> None:
        nonlocal done
        c.step(prog.span(done / total, (done + 1) / total))
        done += 1

    for _ in range(race):
        for c in climbs:
            if not c.finished:
                advance(c)
    # best-first: the best start that can still move goes on, until the iterations are spent (a
    # leader that converges early to a local maximum hands its remaining budget to the next)
    while done < total:
        moving = [c for c in climbs if not c.finished and c.iterations < max_iter]
        if not moving:
            break
        advance(max(moving, key=lambda c: c.top_ns))
    prog.step(1.0, f"{stage}: done")
    values = [c.top_ns for c in climbs]
    top = max(values)
    best = climbs[values.index(top)]
    return TensorNormResult(
        value=best.top_ns,
        a=best.top_a,
        u=best.top_u,
        converged=best.converged,
        iterations=best.iterations,
        restarts=R,
        spread=(top - min(values)) / top if top > 0 else 0.0,
        values=tuple(values),
        matvecs=sum(c.matvecs for c in climbs),
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
    max_restarts: int = 20,
    progress: Progress | None = None,
    stage: str = "hessian norm",
) -> OutputHessianNormResult:
    """max_i ||Hess(F_i)||_2, each by Lanczos on v -> Hess(F_i) v (largest |lambda|).

    Output i (sample-major) is output c = i mod k of sample j = i div k, and F_i depends on
    sample j only (models act on samples independently, see :mod:`plcore.kernel.methods`), so
    Hess(F_i) v = output_hvp on the one-sample batch X[j] with a = e_c (length k): each product
    costs one sample's forward and double backward instead of all n.

    All N outputs are scanned when N <= ``scan_limit`` (``exhaustive=True``). Otherwise the
    ``scan_limit`` outputs with the largest max_j |u_j^T Hess(F_i) u_j| over ``n_probe`` random
    unit u_j (one :func:`second_directional` pass each) are scanned, and the result is a lower
    bound (``exhaustive=False``). Every scanned output gets one Lanczos cycle of ``krylov_dim``
    products; the output with the largest Ritz value then gets up to ``max_restarts`` restarts
    from its Ritz vector. A Ritz value is a Rayleigh quotient of a unit vector, so ``value``
    stays a lower bound even unconverged (``converged`` says whether every solve converged).
    ``progress`` gets "STAGE: output s/S" and is checked for
    cancellation before every Hessian-vector product.
    """
    if scan_limit < 1 or n_probe < 1:
        raise OptionsError(f"need scan_limit >= 1 and n_probe >= 1, got {scan_limit}, {n_probe}")
    prog = progress or Progress()
    w = resolve_params(model, params, device=X.device)
    m, n_out, k = w.numel(), _n_outputs(model, X), model.output_dim
    if n_out <= scan_limit:
        candidates = list(range(n_out))
    else:
        score = torch.zeros(n_out, dtype=w.dtype, device=w.device)
        for _ in range(n_probe):
            prog.check()
            u = unit(torch.randn(m, generator=generator, dtype=torch.float64).to(w.device))
            score = torch.maximum(score, second_directional(model, X, u, params=w).abs())
        candidates = [int(i) for i in torch.argsort(score, descending=True)[:scan_limit]]
    S = len(candidates)

    def solve(i: int, v0: Tensor, restarts: int, lo: float, hi: float, label: str) -> EigenPair:
        j, c = divmod(i, k)
        e = torch.zeros(k, dtype=w.dtype, device=w.device)
        e[c] = 1.0
        return top_abs_eigenpair(
            partial(hvp_at, model, X[j : j + 1], w, e),
            v0,
            krylov_dim=krylov_dim,
            tol=tol,
            max_restarts=restarts,
            check=Ticker(prog, lo, hi, label, (restarts + 1) * krylov_dim),
        )

    # one Lanczos cycle per scanned output, then restarts for the best one only
    pairs: list[EigenPair] = []
    for done, i in enumerate(candidates):
        label = f"{stage}: output {done + 1}/{S}"
        prog.step(0.8 * done / S, label)
        v0 = unit(torch.randn(m, generator=generator, dtype=torch.float64).to(w.device))
        pairs.append(solve(i, v0, 0, 0.8 * done / S, 0.8 * (done + 1) / S, label))
    top = max(range(S), key=lambda s: abs(pairs[s].theta))
    first = pairs[top]
    iterations = sum(p.matvecs for p in pairs)
    best = first
    if not first.converged and max_restarts > 0:
        best = solve(candidates[top], first.vector, max_restarts - 1, 0.8, 1.0, f"{stage}: refine")
        iterations += best.matvecs
        if abs(best.theta) < abs(first.theta):  # never below the first cycle's Ritz value
            best = first
    converged = best.converged and all(p.converged for s, p in enumerate(pairs) if s != top)
    return OutputHessianNormResult(
        value=abs(best.theta),
        index=candidates[top],
        converged=converged,
        iterations=iterations,
        exhaustive=len(candidates) == n_out,
        scanned=len(candidates),
        vector=best.vector,
    )
