"""Progress reporting and cooperative cancellation for long computations.

The worker passes two callables into :func:`plcore.certify`: ``on_progress(fraction, stage)``
and ``should_cancel() -> bool``. The core calls :meth:`Progress.step` between units of work;
when ``should_cancel`` answers True it raises :class:`plcore.errors.Cancelled`, so no half
computed report is ever returned.

Stage strings: ``"name"`` or ``"name: step"`` (e.g. ``"hessian norm: restart 2/3, iteration
14"``). The name (:func:`stage_name`) says which stage runs; the step after :data:`STEP_SEPARATOR`
says where within it. Consumers treat a new name as a stage change (the worker writes it at once)
and a new step as progress within the stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plcore.errors import Cancelled

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]

STEP_SEPARATOR = ": "
"""Separates a stage's name from the step within it in a stage string."""


def stage_name(stage: str) -> str:
    """The stage's name without the step: ``"radius search: rho 3/10"`` -> ``"radius search"``."""
    return stage.split(STEP_SEPARATOR, 1)[0].strip()


def with_step(name: str, step: str) -> str:
    """``"name: step"`` (the stage string for a step within a stage)."""
    return f"{name}{STEP_SEPARATOR}{step}"


@dataclass
class Progress:
    """Maps named stages onto [0, 1] and checks for cancellation at every report."""

    on_progress: ProgressCallback | None = None
    should_cancel: CancelCheck | None = None
    start: float = 0.0
    end: float = 1.0

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled("cancellation requested")

    def step(self, fraction: float, stage: str) -> None:
        """Report ``fraction`` (0..1 within this span) of ``stage``; raise if cancelled."""
        self.check()
        if self.on_progress is not None:
            f = self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)
            self.on_progress(f, stage)

    def span(self, start: float, end: float) -> Progress:
        """A child that reports within [start, end] of this span."""
        width = self.end - self.start
        return Progress(
            self.on_progress,
            self.should_cancel,
            self.start + width * start,
            self.start + width * end,
        )
