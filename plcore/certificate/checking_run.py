"""The checking run: real gradient descent from w0, recorded (CONTRACT.md ``validation``).

GD on the sum loss L = 1/2 ||F(w) - y||^2: w_{t+1} = w_t - eta J(w_t)^T r(w_t). At every step the
run records L_t, ||w_t - w0||, ||r_t|| and the PL ratio ||grad L||^2 / (2 L) = r^T K r / ||r||^2,
which is >= lambda_min(K(w_t)) and so >= mu wherever PL* holds (1/2-normalized, THEORY.md
section 2). A hook sees every iterate (the path certificate uses it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from plcore.certificate._json import finite_or_none
from plcore.models.base import Model
from plcore.progress import Progress
from plcore.report.schema import Validation

StepHook = Callable[[int, Tensor, Tensor, Tensor], float | None]
"""hook(t, w_t, r_t, grad_t), called before the update of step t (and once at t = steps); a
float return value becomes the step size from step t on (the path certificate's step)."""

MAX_POINTS = 2000
REL_TOL = 1e-12


@dataclass(frozen=True)
class RunRecord:
    """Per-step series of a run (index t = 0..steps)."""

    step_size: float
    losses: np.ndarray
    distances: np.ndarray
    residual_norms: np.ndarray
    pl_ratios: np.ndarray
    loss_atol: float
    switched_at: int | None = None
    step_size_after: float | None = None
    #: (t, eta): from step t on the run used step eta (every switch, in order)
    switches: tuple[tuple[int, float], ...] = ()
    final_params: Tensor | None = None  # w_T (the width study's kernel drift needs it)


def residual_and_grad(model: Model, X: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """r(w) = F(w) - y and grad L = J(w)^T r(w) in one forward and one backward pass
    (plain autograd: the first torch.func transform of a process imports torch._dynamo, seconds
    that no cancel check can interrupt)."""
    wg = w.detach().requires_grad_(True)
    with torch.enable_grad():
        F = model.apply_flat(wg, X)
        r = (F - y).detach()
        if not F.requires_grad:
            return r, torch.zeros_like(wg).detach()
        (g,) = torch.autograd.grad(F, wg, r, allow_unused=True)
    return r, torch.zeros_like(wg).detach() if g is None else g.detach()


def pilot_path(
    model: Model, X: Tensor, y: Tensor, w0: Tensor, eta: float, steps: int
) -> list[Tensor]:
    """The first ``steps`` GD iterates w_1..w_steps from w0 with step eta (probed as "path")."""
    w = w0.detach().clone()
    out = []
    for _ in range(steps):
        _, g = residual_and_grad(model, X, y, w)
        w = w - eta * g
        out.append(w)
    return out


def loss_tolerance(model: Model, X: Tensor, y: Tensor, w0: Tensor) -> float:
    """Absolute floor below which float64 cannot resolve the loss:
    1/2 (1e-13 (||y|| + ||F(w0)||))^2 (residual entries carry ~1e-16 relative rounding)."""
    with torch.no_grad():
        scale = float(y.norm() + model.apply_flat(w0, X).norm())
    return 0.5 * (1e-13 * scale) ** 2


def gd_run(
    model: Model,
    X: Tensor,
    y: Tensor,
    w0: Tensor,
    *,
    step_size: float,
    steps: int,
    hook: StepHook | None = None,
    progress: Progress | None = None,
) -> RunRecord:
    """Run ``steps`` GD steps on the sum loss from ``w0`` (y flat, length N)."""
    prog = progress or Progress()
    every = max(1, steps // 100)
    w = w0.detach().clone()
    losses, dists, rnorms, ratios = [], [], [], []
    eta = step_size
    switched_at: int | None = None
    switches: list[tuple[int, float]] = []
    for t in range(steps + 1):
        if t % every == 0:
            prog.step(t / max(steps, 1), f"checking run: step {t}/{steps}")
        else:
            prog.check()
        r, g = residual_and_grad(model, X, y, w)
        loss = 0.5 * float(r @ r)
        losses.append(loss)
        dists.append(float((w - w0).norm()))
        rnorms.append(math.sqrt(2.0 * loss))
        ratios.append(float(g @ g) / (2.0 * loss) if loss > 0 else math.nan)
        if hook is not None:
            new = hook(t, w, r, g)
            if new is not None:  # the latest switch counts (an estimated, then a rigorous one)
                eta, switched_at = new, t
                switches.append((t, new))
        if t < steps:
            w = w - eta * g
    return RunRecord(
        step_size,
        np.array(losses),
        np.array(dists),
        np.array(rnorms),
        np.array(ratios),
        loss_tolerance(model, X, y, w0),
        switched_at,
        eta if switched_at is not None else None,
        tuple(switches),
        w,
    )


def sgd_run(
    model: Model,
    X: Tensor,
    y: Tensor,
    w0: Tensor,
    *,
    step_size: float,
    batch_size: int,
    steps: int,
    generator: torch.Generator,
    progress: Progress | None = None,
) -> np.ndarray:
    """Mini-batch SGD, w <- w - eta sum_{j in batch} grad l_j with s indices drawn uniformly WITH
    replacement (THEORY.md section 6); returns the full loss L(w_t), t = 0..steps."""
    prog = progress or Progress()
    n = X.shape[0]
    k = y.numel() // n
    Y = y.reshape(n, k)
    w = w0.detach().clone()
    losses = []
    every = max(1, steps // 50)
    for t in range(steps + 1):
        if t % every == 0:
            prog.step(t / max(steps, 1), f"checking run (SGD): step {t}/{steps}")
        else:
            prog.check()
        with torch.no_grad():
            r = model.apply_flat(w, X) - y
        losses.append(0.5 * float(r @ r))
        if t < steps:
            idx = torch.randint(n, (batch_size,), generator=generator).to(X.device)
            _, g = residual_and_grad(model, X[idx], Y[idx].reshape(-1), w)
            w = w - step_size * g
    return np.array(losses)


def downsample_indices(length: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """At most ``max_points`` increasing indices of range(length), first and last included."""
    if length <= max_points:
        return np.arange(length)
    idx = np.unique(np.round(np.linspace(0, length - 1, max_points)).astype(int))
    return idx


def bound_violations(
    losses: np.ndarray, loss0: float, rate: float, atol: float, start: int = 0
) -> np.ndarray:
    """Steps t >= start where L_t > rate^(t - start) L_start (1 + 1e-12) + atol."""
    t = np.arange(len(losses) - start)
    bound = loss0 * np.power(rate, t.astype(float))
    bad = losses[start:] > bound * (1.0 + REL_TOL) + atol
    return np.nonzero(bad)[0] + start


def validation_section(
    rec: RunRecord,
    *,
    rate: float | None,
    radius: float | None,
    applicable: bool,
    sgd_losses: np.ndarray | None = None,
    sgd_batch_size: int | None = None,
) -> Validation:
    """The report's ``validation``: bound_held is checked only when ``applicable`` (the
    certificate closed at w0 and ``rate`` is its 1 - eta mu), up to the step where the run
    switched to a path certificate's step; else null."""
    bound_held: bool | None = None
    first: int | None = None
    if applicable and rate is not None:
        # after a switch to a path certificate's step the w0 rate no longer applies: check up to it
        end = len(rec.losses) if rec.switched_at is None else rec.switched_at + 1
        bad = bound_violations(rec.losses[:end], float(rec.losses[0]), rate, rec.loss_atol)
        bound_held = bad.size == 0
        first = int(bad[0]) if bad.size else None
    idx = downsample_indices(len(rec.losses))
    ratios = rec.pl_ratios[np.isfinite(rec.pl_ratios)]
    sgd: list[float] | None = None
    if sgd_losses is not None:
        sgd = [float(v) for v in sgd_losses[downsample_indices(len(sgd_losses))]]
    return Validation(
        steps=len(rec.losses) - 1,
        step_size=rec.step_size,
        losses=[float(v) for v in rec.losses[idx]],
        bound_held=bound_held,
        max_distance_from_init=float(rec.distances.max()),
        min_pl_ratio=float(ratios.min()) if ratios.size else None,
        radius=radius,
        first_violation_step=first,
        distances=[float(v) for v in rec.distances[idx]],
        sgd_losses=sgd,
        sgd_batch_size=sgd_batch_size,
        recorded_steps=[int(i) for i in idx],
        step_size_switched_at=rec.switched_at,
        step_size_after_switch=rec.step_size_after,
        pl_ratios=[finite_or_none(float(v)) for v in rec.pl_ratios[idx]],
    )
