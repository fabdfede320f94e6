"""Wall time per stage of :func:`plcore.certify`, for the report's ``timings``."""

from __future__ import annotations

import time

from plcore.progress import ProgressCallback


class StageClock:
    """An ``on_progress`` wrapper that times the stages of :func:`certify` (report ``timings``).

    A stage lasts from its first report to the first report of another stage. Detail after a
    colon or in key=value form is dropped ("hessian norm: restart 2/3, iteration 14" counts as
    "hessian norm"), and the balls' "probing ball rho=..." count as "radius search".
    """

    def __init__(self, on_progress: ProgressCallback | None) -> None:
        self.on_progress = on_progress
        self.times: dict[str, float] = {}
        self.current: str | None = None
        self.since = time.perf_counter()

    @staticmethod
    def key(stage: str) -> str:
        name = stage.split(":")[0].strip()
        return "radius search" if name.startswith("probing ball") else name

    def __call__(self, fraction: float, stage: str) -> None:
        key = self.key(stage)
        if key != self.current:
            self._close()
            self.current = key
        if self.on_progress is not None:
            self.on_progress(fraction, stage)

    def _close(self) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.times[self.current] = self.times.get(self.current, 0.0) + now - self.since
        self.since = now

    def finish(self) -> dict[str, float]:
        """Seconds per stage so far (the running stage counted up to now)."""
        self._close()
        return {k: round(v, 3) for k, v in self.times.items()}
