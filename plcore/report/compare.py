"""Ranking candidate models on one dataset by their certified convergence (``plcert compare``).

Each candidate is a certification :class:`~plcore.report.schema.Report` (or none, when its job
failed). Its *rate* is the per-step contraction of the loss, L_{t+1} <= rate L_t, taken from
what the verdict rests on (:func:`ranking_figures`):

- the certificate closes at w0: ``gd.rate`` = 1 - eta mu from step 0, and
  ``gd.iterations_to_target`` = ceil(ln(L0 / eps) / -ln(rate)) (basis ``"w0"``);
- it closes along the checking run from step t*: ``path.rate`` from t* on, and
  t* + ceil(ln(L_t* / eps) / -ln(rate)) steps (basis ``"path"``);
- not certified: the same figures at w0 from the estimated constants (basis ``"estimate"``),
  an estimate, never a guarantee.

The order (:func:`rank`): certified with the rigorous tier first, then certified with the
estimated tier, then the other verdicts, then candidates without a report; within a group the
smaller rate (faster) first, then fewer steps to the target, then submission order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from plcore.report.plots_base import closes_at_init, finite, positive, recorded_steps
from plcore.report.schema import Report

Basis = Literal["w0", "path", "estimate"]

MAX_CANDIDATES = 8
"""Most models one comparison takes (each is a full certification)."""


class RankingEntry(BaseModel):
    """One candidate's place in a comparison."""

    rank: int = Field(description="1 for the best")
    index: int = Field(description="position of the model in the submitted list (0-based)")
    model: str = Field(description="the model's description (or file name)")
    model_sha256: str | None = None
    n_params: int | None = None
    status: str = Field(description="status of the candidate's certification job")
    verdict: str | None = None
    tier: str | None = None
    rate: float | None = Field(
        None, description="per-step loss contraction L_{t+1} <= rate L_t (smaller is faster)"
    )
    basis: Basis | None = Field(
        None, description="w0 (certified from step 0), path (certified from step t*), estimate"
    )
    steps_to_target: int | None = Field(None, description="steps to the target loss")
    target_loss: float | None = None
    job_id: str | None = None
    report_url: str | None = None
    report_html_url: str | None = None
    error: str | None = Field(None, description="why the candidate has no report")


@dataclass(frozen=True)
class Candidate:
    """A model of the comparison and its outcome."""

    index: int
    name: str
    report: Report | None
    status: str = "succeeded"
    job_id: str | None = None
    model_sha256: str | None = None
    error: str | None = None
    report_url: str | None = None
    report_html_url: str | None = None


def _steps_from(loss: float, target: float | None, rate: float) -> int | None:
    """ceil(ln(loss / target) / -ln(rate)), 0 when already at the target."""
    if not positive(target) or not 0 < rate < 1 or not positive(loss):
        return None
    if loss <= target:
        return 0
    return math.ceil(math.log(loss / target) / -math.log(rate))


def path_start_loss(report: Report) -> float | None:
    """L_t* = 1/2 ||r(w_t*)||^2 at the path certificate's step (None when unknown)."""
    r = report.path.residual_at_step
    if positive(r):
        return 0.5 * r * r
    v, t_star = report.validation, report.path.certified_from_step
    if v is None or t_star is None or not v.losses:
        return None
    steps = recorded_steps(v.recorded_steps, len(v.losses))
    before = [loss for t, loss in zip(steps, v.losses, strict=False) if t <= t_star]
    return before[-1] if before and positive(before[-1]) else None


def ranking_figures(report: Report) -> tuple[float | None, int | None, Basis | None]:
    """(rate, steps to target, basis) of one report (module docstring)."""
    g, p = report.gd, report.path
    if report.verdict == "certified":
        if closes_at_init(report) and finite(g.rate):
            return g.rate, g.iterations_to_target, "w0"
        if p.certified_from_step is not None and finite(p.rate):
            start = path_start_loss(report)
            rest = _steps_from(start, g.target_loss, p.rate) if start is not None else None
            return p.rate, (p.certified_from_step + rest if rest is not None else None), "path"
    if finite(g.rate):
        return g.rate, g.iterations_to_target, "estimate"
    return None, None, None


def _group(c: Candidate) -> int:
    if c.report is None:
        return 3
    if c.report.verdict != "certified":
        return 2
    return 0 if c.report.tier == "rigorous" else 1


def rank(candidates: Sequence[Candidate]) -> list[RankingEntry]:
    """The candidates best first (module docstring), as ranking entries."""

    def key(c: Candidate) -> tuple[int, float, float, int]:
        rate, steps, _ = ranking_figures(c.report) if c.report is not None else (None, None, None)
        return (
            _group(c),
            rate if rate is not None else math.inf,
            float(steps) if steps is not None else math.inf,
            c.index,
        )

    out = []
    for place, c in enumerate(sorted(candidates, key=key), start=1):
        r = c.report
        rate, steps, basis = ranking_figures(r) if r is not None else (None, None, None)
        out.append(
            RankingEntry(
                rank=place,
                index=c.index,
                model=(r.problem.model_description if r is not None else "") or c.name,
                model_sha256=r.provenance.model_sha256 if r is not None else c.model_sha256,
                n_params=r.problem.n_params if r is not None else None,
                status=c.status,
                verdict=r.verdict if r is not None else None,
                tier=r.tier if r is not None else None,
                rate=rate,
                basis=basis,
                steps_to_target=steps,
                target_loss=r.gd.target_loss if r is not None else None,
                job_id=c.job_id,
                report_url=c.report_url,
                report_html_url=c.report_html_url,
                error=c.error,
            )
        )
    return out


def predicted_losses(report: Report, steps: Sequence[int]) -> list[float | None]:
    """The loss the ranking's figures predict at each step: L0 rate^t (basis w0 or estimate),
    or the checking run's loss up to t* and L_t* rate^(t - t*) after it (basis path)."""
    rate, _, basis = ranking_figures(report)
    if rate is None or not 0 < rate <= 1:
        return [None] * len(steps)
    if basis == "path":
        t_star = report.path.certified_from_step
        start = path_start_loss(report)
        v = report.validation
        if t_star is None or start is None or v is None:
            return [None] * len(steps)
        run = dict(zip(recorded_steps(v.recorded_steps, len(v.losses)), v.losses, strict=False))
        out: list[float | None] = []
        for t in steps:
            if t >= t_star:
                out.append(start * rate ** (t - t_star))
            else:
                before = [loss for s, loss in run.items() if s <= t]
                out.append(before[-1] if before else None)
        return out
    L0 = report.initial.loss
    return [L0 * rate**t if positive(L0) else None for t in steps]
