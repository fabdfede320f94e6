"""One start of the alternating power method of :func:`plcore.hessian.hessian_tensor_norm`,
advanced one outer iteration at a time (so that several starts can race), and its helpers.

See :func:`plcore.hessian.tensor_norm.hessian_tensor_norm` for the method and its stopping rule.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from plcore.hessian.hvp import output_hvp_at, second_directional_at
from plcore.hessian.lanczos import top_abs_eigenpair
from plcore.models.base import Model
from plcore.progress import Progress

#: relative size of the random kick added to the first inner solve's warm start
KICK = 0.1


def hvp_at(model: Model, X: Tensor, w: Tensor, a: Tensor, v: Tensor) -> Tensor:
    return output_hvp_at(model, X, w, a, v)


def unit(v: Tensor) -> Tensor:
    return v / v.norm()


class Ticker:
    """A ``check`` for Lanczos: each call checks for cancellation and moves the reported
    fraction from ``lo`` towards ``hi`` (reached after ``expected`` calls)."""

    def __init__(self, prog: Progress, lo: float, hi: float, stage: str, expected: int) -> None:
        self.prog, self.lo, self.hi, self.stage = prog, lo, hi, stage
        self.expected, self.calls = max(expected, 1), 0

    def __call__(self) -> None:
        self.calls += 1
        f = self.lo + (self.hi - self.lo) * min(self.calls / self.expected, 1.0)
        self.prog.step(f, self.stage)


def extrapolate(
    model: Model, X: Tensor, w: Tensor, u: Tensor, v: Tensor, prog: Progress
) -> tuple[Tensor, Tensor, float]:
    """The best of u(g) = (u + g (v - u)) / ||.||, g = 1, 2, 4, ... 64, by the value ||H_F[u, u]||
    (doubling while it increases), with H_F[u, u] there.

    The alternating iteration creeps along a ridge with a contraction factor close to 1 (seen
    on CNNs: +2e-4 relative per iteration for dozens of iterations); extrapolating along the
    last step skips part of that creep. Each trial is one forward-over-forward pass, and only
    improvements are kept, so the value still never decreases.
    """
    if float(v @ u) < 0:  # eigenvectors have no sign; H_F[u, u] is even in u
        v = -v
    s = second_directional_at(model, X, w, v)
    best = (v, s, float(s.norm()))
    d = v - u
    g = 2.0
    while g <= 64.0 and float(d.norm()) > 0:
        prog.check()
        ut = unit(u + g * d)
        st = second_directional_at(model, X, w, ut)
        nt = float(st.norm())
        if nt <= best[2]:
            break
        best = (ut, st, nt)
        g *= 2.0
    return best


class Climb:
    """The state of one start: the current u and s = H_F[u, u], the best (a, u) seen, the
    stopping-rule inputs, and the counters."""

    def __init__(
        self,
        model: Model,
        X: Tensor,
        w: Tensor,
        u0: Tensor,
        label: str,
        generator: torch.Generator,
        tol: float,
        krylov_dim: int,
    ) -> None:
        self.model, self.X, self.w, self.label = model, X, w, label
        self.generator, self.tol, self.krylov_dim = generator, tol, krylov_dim
        self.u = u0
        self.s = second_directional_at(model, X, w, u0)
        self.ns = float(self.s.norm())
        self.prev, self.rel, self.res_rel = -1.0, 1.0, 1.0
        self.converged = self.finished = False
        self.iterations = self.matvecs = 0
        self.top_ns, self.top_a, self.top_u = -1.0, self.s, u0
        self._keep()

    def _keep(self) -> None:
        if self.ns > self.top_ns:
            z = torch.zeros_like(self.s)
            self.top_ns, self.top_a, self.top_u = (
                self.ns,
                self.s / self.ns if self.ns > 0 else z,
                self.u,
            )

    def step(self, prog: Progress) -> None:
        """One outer iteration: a = s / ||s||, one Lanczos cycle on M(a) warm-started from u,
        extrapolation; reports within ``prog`` and checks for cancellation per product."""
        self.iterations += 1
        stage = f"{self.label}, iteration {self.iterations}"
        prog.step(0.0, stage)
        if self.ns == 0.0:
            self.converged = self.finished = True
            return
        m = self.u.numel()
        a = self.s / self.ns
        noise = unit(torch.randn(m, generator=self.generator, dtype=torch.float64).to(self.u))
        kick = KICK if self.iterations == 1 else max(min(KICK, self.res_rel), 1e-2 * self.tol)
        pair = top_abs_eigenpair(
            partial(hvp_at, self.model, self.X, self.w, a),
            self.u + kick * noise,
            krylov_dim=self.krylov_dim,
            tol=max(self.tol, min(1e-2, 0.1 * self.rel)),
            max_restarts=0,
            check=Ticker(prog, 0.0, 1.0, stage, self.krylov_dim),
        )
        self.matvecs += pair.matvecs
        self.u, self.s, self.ns = extrapolate(self.model, self.X, self.w, self.u, pair.vector, prog)
        self._keep()
        value = abs(pair.theta)
        self.rel = abs(value - self.prev) / max(value, 1e-300)
        self.res_rel = pair.residual / max(value, 1e-300)
        self.prev = value
        if self.rel <= self.tol and pair.residual <= self.tol * value:
            self.converged = self.finished = True
