"""Progress reporting and cooperative cancellation for long computations.

The worker passes two callables into :func:`plcore.certify`: ``on_progress(fraction, stage)``
and ``should_cancel() -> bool``. The core calls :meth:`Progress.step` between units of work;
when ``should_cancel`` answers True it raises :class:`plcore.errors.Cancelled`, so no half
computed report is ever returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plcore.errors import Cancelled

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


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
