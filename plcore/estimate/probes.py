"""One-sided estimates of the constants on a ball B(w0, rho) by evaluating points in it.

THEORY.md section 8: sup and inf over a ball in R^m cannot be computed. Evaluating
lambda_min(K(w)), ||J(w)||_2 and ||H_F(w)|| at points w of the ball gives

* L_F_lower    = max ||J(w)||_2          <= L_F    = sup_B ||J||_2      (a LOWER bound)
* beta_F_lower = max ||H_F(w)|| (power)  <= sup_B ||H_F||                (a LOWER bound, also
  because the power method's value is itself a lower bound at each point)
* mu_upper     = min lambda_min(K(w))    >= mu     = inf_B lambda_min(K) (an UPPER bound)

At each point lambda_min(K(w)) and lambda_max(K(w)) come from Cholesky + Lanczos as Rayleigh
quotients (:mod:`plcore.kernel.extremes`; eigvalsh for N < 512): an upper estimate of
lambda_min and a lower one of lambda_max, the sides these estimates need.

Never a proof. Points: the centre; ``n_sphere`` uniform directions at each of the radii rho/4,
rho/2 and rho; the given path points that lie in the ball; and ``n_adversarial`` runs each of
projected normalised gradient ascent on a . H_F(w)[u, u] (with (a, u) refreshed by the power
method at every step) and projected descent on lambda_min(K(w)), ``adversarial_steps`` steps each.
Cost: 1 + 3 n_sphere + len(path) + 2 n_adversarial (adversarial_steps + 1) kernel evaluations and
about as many Hessian-norm solves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from plcore.dataset import Dataset
from plcore.errors import OptionsError
from plcore.hessian.hvp import flat_map, second_directional_graph
from plcore.hessian.tensor_norm import TensorNormResult, hessian_tensor_norm
from plcore.kernel import KernelMethod, tangent_kernel
from plcore.kernel._checks import resolve_params
from plcore.kernel.extremes import KernelExtremes, kernel_extremes
from plcore.models.base import Model
from plcore.progress import Progress

#: a probe's Hessian norm is a lower bound whatever the accuracy: solve loosely, probe more points
_HESSIAN_TOL = 1e-6
_HESSIAN_MAX_ITER = 50

ProbeSource = Literal["center", "sphere", "path", "ascent_hessian", "descent_lambda"]


@dataclass(frozen=True)
class ProbeRecord:
    """One evaluated point w of the ball.

    Attributes:
        source: how the point was chosen.
        distance: ||w - w0||_2.
        lambda_min: lambda_min(K(w)) as computed (may be slightly negative by rounding).
        jacobian_norm: ||J(w)||_2 = sqrt(lambda_max(K(w))).
        hessian_norm: the power method's ||H_F(w)|| (a lower bound at that point).
    """

    source: ProbeSource
    distance: float
    lambda_min: float
    jacobian_norm: float
    hessian_norm: float


@dataclass(frozen=True)
class BallProbe:
    """One-sided estimates on B(w0, rho) (module docstring): L_F_lower and beta_F_lower are
    lower bounds of sups, mu_upper an upper bound of an inf. ``records`` lists every point
    (``reused`` of them evaluated for an earlier ball of the same search); ``stopped_early``:
    the caller's stop rule ended the probing before every planned point was evaluated."""

    rho: float
    L_F_lower: float
    beta_F_lower: float
    mu_upper: float
    records: list[ProbeRecord]
    kernel_evaluations: int = 0
    hessian_evaluations: int = 0
    stopped_early: bool = False
    reused: int = 0


class ProbeCache:
    """Points already evaluated, shared by the balls of one radius search.

    A point of a smaller ball B(w0, rho') lies in every larger ball B(w0, rho), so its record
    counts there too (the estimates are extremes over points, any point of the ball is valid);
    and the Hessian-norm solution (u) at the nearest solved point warm-starts the next solve.
    """

    def __init__(self) -> None:
        self.records: list[tuple[Tensor, ProbeRecord]] = []
        #: whole results by point: a point solved before (equal entries) is not solved again
        self.results: list[tuple[Tensor, TensorNormResult]] = []

    def nearest_u(self, w: Tensor) -> Tensor | None:
        if not self.results:
            return None
        d = [float((p - w).norm()) for p, _ in self.results]
        return self.results[d.index(min(d))][1].u


class _Evaluator:
    def __init__(
        self,
        model: Model,
        X: Tensor,
        generator: torch.Generator,
        kernel_method: KernelMethod | str,
        hessian_restarts: int,
        cache: ProbeCache,
        hessian_max_iter: int,
        progress: Progress,
    ) -> None:
        self.model, self.X, self.generator = model, X, generator
        self.kernel_method, self.hessian_restarts = kernel_method, hessian_restarts
        self.cache, self.max_iter, self.progress = cache, hessian_max_iter, progress
        self.krylov_dim = 10
        self._extremes: list[tuple[Tensor, KernelExtremes]] = []
        self.kernels = 0
        self.hessians = 0
        self.stage = "probing ball"

    def hessian(self, w: Tensor, max_iter: int | None = None) -> TensorNormResult:
        """The power method at w, warm-started from the solution at the nearest solved point
        (then only that start, unless more restarts are asked for); ``max_iter`` overrides the
        evaluator's iteration count."""
        for p, known in self.cache.results:
            if p is w or (p.shape == w.shape and torch.equal(p, w)):
                return known
        self.hessians += 1
        warm = self.cache.nearest_u(w)
        res = hessian_tensor_norm(
            self.model,
            self.X,
            params=w,
            generator=self.generator,
            restarts=self.hessian_restarts,
            tol=_HESSIAN_TOL,
            max_iter=self.max_iter if max_iter is None else max_iter,
            krylov_dim=self.krylov_dim,
            warm_starts=() if warm is None else (warm,),
            default_start=warm is None,
            progress=self.progress,
            stage=f"{self.stage}: hessian norm",
        )
        self.cache.results.append((w, res))
        return res

    def extremes(self, w: Tensor) -> KernelExtremes:
        """lambda_min (upper) and lambda_max (lower) of K(w) by Cholesky + Lanczos: one-sided
        in the direction the probe estimates need (:mod:`plcore.kernel.extremes`); a point
        evaluated before (equal entries, e.g. the best point of a descent) is not evaluated
        again. The kernel assembly and the factorisation poll for cancellation as they run."""
        for p, known in self._extremes:
            if p is w or (p.shape == w.shape and torch.equal(p, w)):
                return known
        self.kernels += 1
        prog = self.progress
        K = prog.run_blocking(
            lambda: tangent_kernel(self.model, self.X, self.kernel_method, params=w),
            f"{self.stage}: tangent kernel",
        )
        ex = prog.run_blocking(
            lambda: kernel_extremes(K, generator=self.generator, check=prog.check),
            f"{self.stage}: kernel extremes",
        )
        self._extremes.append((w, ex))
        return ex

    def record(
        self, source: ProbeSource, w: Tensor, w0: Tensor, hessian: float | None = None
    ) -> ProbeRecord:
        ex = self.extremes(w)
        h = self.hessian(w).value if hessian is None else hessian
        rec = ProbeRecord(
            source=source,
            distance=float((w - w0).norm()),
            lambda_min=ex.lambda_min_upper,
            jacobian_norm=math.sqrt(max(ex.lambda_max_lower, 0.0)),
            hessian_norm=h,
        )
        self.cache.records.append((w, rec))
        return rec


def _project(w: Tensor, w0: Tensor, rho: float) -> Tensor:
    d = w - w0
    n = float(d.norm())
    return w if n <= rho else w0 + d * (rho / n)


def _random_direction(m: int, generator: torch.Generator, like: Tensor) -> Tensor:
    d = torch.randn(m, generator=generator, dtype=torch.float64).to(like.device)
    return d / d.norm()


def _ascent_gradient(model: Model, X: Tensor, w: Tensor, a: Tensor, u: Tensor) -> Tensor:
    """grad_w [a . H_F(w)[u, u]] with (a, u) held fixed (third derivatives by autograd)."""
    wg = w.detach().requires_grad_(True)
    with torch.enable_grad():
        s = second_directional_graph(flat_map(model, X), wg, u, create_graph=True)
        if not s.requires_grad:
            return torch.zeros_like(w)
        (g,) = torch.autograd.grad(s @ a, wg, allow_unused=True)
    return torch.zeros_like(w) if g is None else g


def _lambda_min_gradient(model: Model, X: Tensor, w: Tensor, v: Tensor) -> Tensor:
    """grad lambda_min(K(w)) = grad_w ||J(w)^T v||^2 for the unit eigenvector v (simple eigenvalue:
    d lambda = v^T dK v = d(v^T J J^T v) with v held fixed, Hellmann-Feynman)."""
    wg = w.detach().requires_grad_(True)
    with torch.enable_grad():
        y = flat_map(model, X)(wg)
        (Jtv,) = torch.autograd.grad(y, wg, v, create_graph=True)
        if not Jtv.requires_grad:
            return torch.zeros_like(w)
        (g,) = torch.autograd.grad(Jtv @ Jtv, wg)
    return g


StopRule = Callable[[float, float, float], bool]
"""stop(L_F_lower, beta_F_lower, mu_upper) -> True when more points cannot change what the
caller decides from the ball (each new point only raises the first two and lowers the third)."""


def probe_ball(
    model: Model,
    data: Dataset,
    rho: float,
    *,
    generator: torch.Generator,
    n_sphere: int = 8,
    n_adversarial: int = 2,
    adversarial_steps: int = 10,
    path: Sequence[Tensor] = (),
    kernel_method: KernelMethod | str = "auto",
    progress: Progress | None = None,
    hessian_restarts: int = 1,
    center: Tensor | None = None,
    cache: ProbeCache | None = None,
    stop: StopRule | None = None,
    hessian_max_iter: int = _HESSIAN_MAX_ITER,
    hessian_krylov_dim: int = 10,
) -> BallProbe:
    """Evaluate lambda_min(K), ||J||_2 and ||H_F|| on points of B(w0, rho); one-sided estimates.

    L_F_lower = max ||J(w)||_2, beta_F_lower = max ||H_F(w)||, mu_upper = min lambda_min(K(w))
    over the evaluated points w (module docstring: which points, and the cost). The ball is
    centred at ``center`` (a flat w, e.g. an iterate w_t of a training run) or the model's w0.

    With a ``cache`` shared by the balls of one search (same centre), every cached point inside
    the ball counts as a point of it, the centre and the inner shells (rho/4, rho/2) get only the
    points the cache does not already have there (a shell at radius s counts the cached sphere
    points at distances in [s, 2 s]), and each Hessian solve is warm-started from
    the nearest solved point. The boundary shell is evaluated first; ``stop`` is asked after
    every point and ends the probing early (``stopped_early``) when it answers True.
    """
    if not (rho >= 0) or math.isinf(rho):
        raise OptionsError(f"rho must be finite and >= 0, got {rho}")
    if min(n_sphere, n_adversarial, adversarial_steps, hessian_restarts - 1) < 0:
        raise OptionsError(
            f"need n_sphere, n_adversarial, adversarial_steps >= 0 and hessian_restarts >= 1, "
            f"got {n_sphere}, {n_adversarial}, {adversarial_steps}, {hessian_restarts}"
        )
    progress = progress or Progress()
    X = data.X
    w0 = resolve_params(model, center, device=X.device)
    m = w0.numel()
    cache = cache if cache is not None else ProbeCache()
    ev = _Evaluator(
        model, X, generator, kernel_method, hessian_restarts, cache, hessian_max_iter, progress
    )
    ev.krylov_dim = hessian_krylov_dim
    stage = f"probing ball rho={rho:.3g}"
    ev.stage = stage
    inside = [p for p in path if float((p.to(w0) - w0).norm()) <= rho * (1 + 1e-12)]
    records = [r for _, r in cache.records if r.distance <= rho * (1 + 1e-12)]
    seen = len(cache.records)

    def have(lo: float, hi: float, source: ProbeSource) -> int:
        return sum(1 for r in records if r.source == source and lo <= r.distance <= hi)

    plan: list[tuple[ProbeSource, float]] = [("sphere", rho)] * n_sphere
    for radius in (rho / 2, rho / 4):
        missing = n_sphere - have(radius * (1 - 1e-9), radius * 2 * (1 - 1e-9), "sphere")
        plan += [("sphere", radius)] * max(missing, 0)
    if not any(r.distance == 0.0 for r in records):
        plan.insert(0, ("center", 0.0))
    total = len(plan) + len(inside) + 2 * n_adversarial * (adversarial_steps + 1)
    done = 0

    def sub() -> Progress:
        t = max(total, 1)
        return progress.span(min(done / t, 1.0), min((done + 1) / t, 1.0))

    def tick(units: int = 1) -> bool:
        """Count work done; True when the stop rule says the outcome is settled."""
        nonlocal done
        done += units
        progress.step(done / max(total, 1), stage)
        if stop is None or not records:
            return False
        return stop(
            max(r.jacobian_norm for r in records),
            max(r.hessian_norm for r in records),
            min(r.lambda_min for r in records),
        )

    def evaluate(source: ProbeSource, w: Tensor) -> ProbeRecord:
        ev.progress = sub()
        return ev.record(source, w, w0)

    progress.step(0.0, stage)
    stopped = False
    for source, radius in plan:
        w = w0 if source == "center" else w0 + radius * _random_direction(m, generator, w0)
        records.append(evaluate(source, w))
        if stopped := tick():
            break
    for p in () if stopped else inside:
        records.append(evaluate("path", p.to(w0)))
        if stopped := tick():
            break
    if not stopped:
        stopped = _adversarial(
            model, X, w0, rho, generator, n_adversarial, adversarial_steps, ev, records, tick, sub
        )
    return BallProbe(
        rho=rho,
        L_F_lower=max(r.jacobian_norm for r in records),
        beta_F_lower=max(r.hessian_norm for r in records),
        mu_upper=min(r.lambda_min for r in records),
        records=records,
        kernel_evaluations=ev.kernels,
        hessian_evaluations=ev.hessians,
        stopped_early=stopped,
        reused=len(records) - (len(cache.records) - seen),
    )


def _adversarial(
    model: Model,
    X: Tensor,
    w0: Tensor,
    rho: float,
    generator: torch.Generator,
    n_adversarial: int,
    adversarial_steps: int,
    ev: _Evaluator,
    records: list[ProbeRecord],
    tick: Callable[..., bool],
    sub: Callable[[], Progress],
) -> bool:
    """The adversarial runs of :func:`probe_ball`; True when the stop rule ended them."""
    m = w0.numel()
    step = 2.0 * rho / max(adversarial_steps, 1)
    for run in range(n_adversarial):
        # ascent on the Hessian norm proxy a . H_F(w)[u, u]
        w = w0 if run == 0 else w0 + 0.5 * rho * _random_direction(m, generator, w0)
        best_w, best_h = w, -1.0
        for it in range(adversarial_steps + 1):
            ev.progress = sub()
            # an ascent step only needs (a, u) near the current point: one outer iteration,
            # warm-started from the previous step's u (every value is still attained there)
            res = ev.hessian(w, max_iter=1 if it > 0 else None)
            if res.value > best_h:
                best_w, best_h = w, res.value
            tick()
            if it == adversarial_steps or rho == 0:
                continue
            g = _ascent_gradient(model, X, w, res.a, res.u)
            gn = float(g.norm())
            if gn == 0.0:
                continue
            w = _project(w + step * g / gn, w0, rho)
        records.append(ev.record("ascent_hessian", best_w, w0, hessian=best_h))
        if tick(0):
            return True

        # descent on lambda_min(K(w))
        w = w0 if run == 0 else w0 + 0.5 * rho * _random_direction(m, generator, w0)
        best_w, best_l = w, math.inf
        for it in range(adversarial_steps + 1):
            ev.progress = sub()
            ex = ev.extremes(w)
            if ex.lambda_min_upper < best_l:
                best_w, best_l = w, ex.lambda_min_upper
            tick()
            if it == adversarial_steps or rho == 0 or ex.min_vector is None:
                continue
            g = _lambda_min_gradient(model, X, w, ex.min_vector)
            gn = float(g.norm())
            if gn == 0.0:
                continue
            w = _project(w - step * g / gn, w0, rho)
        ev.progress = sub()
        records.append(ev.record("descent_lambda", best_w, w0))
        if tick(0):
            return True
    return False
