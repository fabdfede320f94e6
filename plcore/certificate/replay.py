"""Replaying a report's checking run outside plcert, on the source torch module.

A path certificate says: the checking run reached w_t* at step t*, and from there GD with the
certified step converges at the certified rate and stays in B(w_t*, R). :func:`replay_gd` runs
the same GD (the report's step sizes, switched where the report says) with plain autograd on a
torch module's own parameters, so that tests and benchmarks can check the claim against a run
that shares no code with the certificate (the module is the torch model a user exported, or a
JSON model's module, which is the spec's own function).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plcore.report.schema import Report


@dataclass(frozen=True)
class Replay:
    """The replayed run: losses L_t (1/2 sum of squares) for t = 0..steps, the parameters at t*
    (flat, in ``module.parameters()`` order) and ||w_t - w_t*|| for t >= t*."""

    losses: list[float]
    w_star: Tensor | None
    distances_after: list[float]


def step_schedule(report: Report) -> list[tuple[int, float]]:
    """(t, eta) pairs: the run's step sizes from step t on, starting with validation.step_size."""
    v, p = report.validation, report.path
    if v is None or v.step_size is None:
        raise ValueError("the report has no checking run")
    return [(0, float(v.step_size))] + [(c.step, c.step_size) for c in p.step_changes]


def replay_gd(module: nn.Module, X: Tensor, Y: Tensor, report: Report) -> Replay:
    """GD on 1/2 ||module(X) - Y||^2 over the module's trainable parameters with the report's
    step sizes; the module is modified in place (pass a copy)."""
    v = report.validation
    if v is None or v.steps is None:
        raise ValueError("the report has no checking run")
    t_star = report.path.certified_from_step
    schedule = dict(step_schedule(report))
    params = [p for p in module.parameters() if p.requires_grad]
    losses: list[float] = []
    dists: list[float] = []
    w_star: Tensor | None = None
    eta = schedule[0]
    for t in range(int(v.steps) + 1):
        eta = schedule.get(t, eta)
        module.zero_grad(set_to_none=True)
        out = module(X).reshape(Y.shape)
        loss = 0.5 * ((out - Y) ** 2).sum()
        loss.backward()
        losses.append(float(loss.detach()))
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        if t_star is not None and t == t_star:
            w_star = flat.clone()
        if w_star is not None:
            dists.append(float((flat - w_star).norm()))
        if t < v.steps:
            with torch.no_grad():
                for p in params:
                    assert p.grad is not None
                    p.sub_(eta * p.grad)
    return Replay(losses, w_star, dists)


def rate_violations(replay: Replay, report: Report, rel: float = 1e-9) -> list[int]:
    """Steps t > t* where L_t > rate^(t - t*) L_t* (1 + rel) + a few ulps of L_0 (empty: the
    certified rate held on the replayed run)."""
    p = report.path
    if p.certified_from_step is None or p.rate is None:
        return []
    t0, q = p.certified_from_step, p.rate
    base = replay.losses[t0]
    atol = 64 * 2.0**-52 * replay.losses[0]
    return [
        t
        for t in range(t0 + 1, len(replay.losses))
        if replay.losses[t] > q ** (t - t0) * base * (1 + rel) + atol
    ]


def outside_radius(replay: Replay, report: Report) -> int:
    """How many replayed iterates after t* leave B(w_t*, R) (R: the path certificate's radius)."""
    p = report.path
    if p.radius is None:
        return 0
    return sum(d > p.radius * (1 + 1e-9) for d in replay.distances_after if math.isfinite(d))
