"""Keeps a running job's lease alive and carries progress and cancellation between the job
store and :func:`plcore.certify`.

The numerical core calls ``on_progress(fraction, stage)`` between units of work and
``should_cancel()`` before each; neither may cost a database round trip every time. The keeper
therefore writes at most once per ``min_interval_s`` from the computing thread, and a background
thread renews the lease every ``lease_s / 3`` (and flushes the latest progress) even while one
long stage reports nothing. A lost lease (another worker re-claimed the job after this one was
presumed dead) reads as a cancellation: the computation stops and its result is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from service.store.jobs import JobStore

log = logging.getLogger("plcert.worker")


class LeaseKeeper:
    """Heartbeats for one claimed attempt of one job (use as a context manager)."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        attempt: int,
        *,
        lease_s: float,
        min_interval_s: float = 1.0,
    ) -> None:
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self.lease_s = lease_s
        self.min_interval_s = min_interval_s
        self.cancel_requested = False
        self.lost = False
        self._pending: tuple[float, str] | None = None
        self._last_write = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    # ----- callbacks for plcore.certify ---------------------------------------------------------

    def on_progress(self, fraction: float, stage: str) -> None:
        """Record progress; write it (and renew the lease) if the last write is old enough."""
        with self._lock:
            self._pending = (float(fraction), stage)
        if time.monotonic() - self._last_write >= self.min_interval_s:
            self.beat()

    def should_cancel(self) -> bool:
        """True once the user asked to cancel or this worker lost the job."""
        if time.monotonic() - self._last_write >= self.min_interval_s:
            self.beat()
        return self.cancel_requested or self.lost

    # ----- writing --------------------------------------------------------------------------

    def beat(self) -> None:
        """Renew the lease now, with the latest progress if any (errors are logged, not raised).

        A failing database does not stop the computation: if the lease runs out meanwhile, the
        janitor re-queues the job and this attempt's result is dropped by ``finish``'s CAS.
        """
        with self._lock:
            if self.lost:
                return
            pending, self._pending = self._pending, None
            self._last_write = time.monotonic()
            try:
                result = self.store.heartbeat(
                    self.job_id,
                    attempt=self.attempt,
                    lease_s=self.lease_s,
                    fraction=pending[0] if pending else None,
                    stage=pending[1] if pending else None,
                )
            except Exception:
                log.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
                if pending is not None and self._pending is None:
                    self._pending = pending
                return
            if not result.ok:
                self.lost = True
                log.warning(
                    "job %s attempt %d lost its lease (re-claimed, finished or deleted)",
                    self.job_id,
                    self.attempt,
                )
            self.cancel_requested = self.cancel_requested or result.cancel_requested

    def _run(self) -> None:
        period = max(self.lease_s / 3.0, 0.05)
        tick = min(period, max(self.min_interval_s, 0.05))
        while not self._stop.wait(tick):
            since = time.monotonic() - self._last_write
            if since >= period or (self._pending is not None and since >= self.min_interval_s):
                self.beat()
            if self.lost:
                return

    # ----- lifetime -------------------------------------------------------------------------

    def start(self) -> LeaseKeeper:
        """Start the background heartbeat thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread (waits for a beat in progress)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(self.lease_s, 5.0))

    def __enter__(self) -> LeaseKeeper:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
