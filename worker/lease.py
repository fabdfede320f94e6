"""Keeps a running job's lease alive and carries progress and cancellation between the job
store and :func:`plcore.certify`.

The numerical core calls ``on_progress(fraction, stage)`` and ``should_cancel()`` from its inner
loops (Lanczos, power method, kernel blocks, GD steps), possibly thousands of times a second.
Neither may touch the database: both only read or write fields of this object. A background
thread does all the I/O:

- progress: a new stage name (:func:`plcore.progress.stage_name`, the text before ``": "``) is
  written at once (the thread is woken); steps within a stage at most once per
  ``min_interval_s``, always the latest one;
- cancellation: the job's cancel flag is read every ``cancel_poll_s`` (a one-row SELECT), so
  ``should_cancel`` answers within that time of the request, whatever the core is doing;
- the lease is renewed every ``lease_s / 3`` even while one long stage reports nothing.

It also adds up the wall time spent in each stage name (:meth:`LeaseKeeper.stage_seconds`), which
the task logs when the job ends.

A lost lease (another worker re-claimed the job after this one was presumed dead) reads as a
cancellation: the computation stops and its result is dropped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from types import TracebackType

from plcore.progress import stage_name
from service.store.jobs import HeartbeatResult, JobStore

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
        cancel_poll_s: float = 0.5,
    ) -> None:
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self.lease_s = lease_s
        self.min_interval_s = min_interval_s
        self.cancel_poll_s = cancel_poll_s
        self.cancel_requested = False
        self.lost = False
        self._pending: tuple[float, str] | None = None
        self._written_stage: str | None = None
        self._seen_stage: str | None = None
        self._stage_started = time.monotonic()
        self._stage_seconds: dict[str, float] = {}
        self._last_write = time.monotonic()
        self._last_failure = -math.inf
        self._last_poll = -math.inf
        self._lock = threading.Lock()
        self._io = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    # ----- callbacks for plcore.certify (no I/O) ------------------------------------------------

    def on_progress(self, fraction: float, stage: str) -> None:
        """Record progress; a new stage name wakes the writer thread at once."""
        name = stage_name(stage)
        with self._lock:
            self._pending = (float(fraction), stage)
            new_stage = name != self._written_stage
            if name != self._seen_stage:
                self._close_stage(time.monotonic())
                self._seen_stage = name
        if new_stage:
            self._wake.set()

    def _close_stage(self, now: float) -> None:
        if self._seen_stage is not None:
            spent = now - self._stage_started
            self._stage_seconds[self._seen_stage] = (
                self._stage_seconds.get(self._seen_stage, 0.0) + spent
            )
        self._stage_started = now

    def stage_seconds(self) -> dict[str, float]:
        """Wall seconds spent in each stage name so far (the current one up to now)."""
        with self._lock:
            self._close_stage(time.monotonic())
            return dict(self._stage_seconds)

    def should_cancel(self) -> bool:
        """True once the user asked to cancel or this worker lost the job.

        Reads the flags the writer thread refreshes every ``cancel_poll_s``; only when that
        thread is not running (a keeper used without ``start``) does it poll the store itself.
        """
        if not self._thread.is_alive() and time.monotonic() - self._last_poll >= self.cancel_poll_s:
            self.poll()
        return self.cancel_requested or self.lost

    # ----- I/O ------------------------------------------------------------------------------

    def _apply(self, result: HeartbeatResult) -> None:
        self._last_poll = time.monotonic()
        if not result.ok and not self.lost:
            self.lost = True
            log.warning(
                "job %s attempt %d lost its lease (re-claimed, finished or deleted)",
                self.job_id,
                self.attempt,
            )
        self.cancel_requested = self.cancel_requested or result.cancel_requested

    def poll(self) -> None:
        """Read the cancel flag and whether this attempt still holds the job (no write)."""
        with self._io:
            if self.lost:
                return
            try:
                result = self.store.attempt_state(self.job_id, attempt=self.attempt)
            except Exception:
                log.warning("cancel poll of job %s failed", self.job_id, exc_info=True)
                return
            self._apply(result)

    def beat(self) -> None:
        """Renew the lease now, with the latest progress if any (errors are logged, not raised).

        A failing database does not stop the computation: if the lease runs out meanwhile, the
        janitor re-queues the job and this attempt's result is dropped by ``finish``'s CAS.
        """
        with self._io:
            if self.lost:
                return
            with self._lock:
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
                self._last_failure = time.monotonic()
                with self._lock:
                    if pending is not None and self._pending is None:
                        self._pending = pending
                return
            if pending is not None:
                self._written_stage = stage_name(pending[1])
            self._apply(result)

    def _due(self, now: float) -> bool:
        if now - self._last_failure < self.min_interval_s:
            return False  # the store failed just now: retry after the interval, not every tick
        since = now - self._last_write
        if since >= max(self.lease_s / 3.0, 0.05):
            return True
        with self._lock:
            pending = self._pending
        if pending is None:
            return False
        return stage_name(pending[1]) != self._written_stage or since >= self.min_interval_s

    def _run(self) -> None:
        # Wake often (a check of two clocks); the store is touched only when something is due.
        tick = max(min(0.1, self.cancel_poll_s, self.min_interval_s, self.lease_s / 3.0), 0.01)
        while not self._stop.is_set():
            self._wake.wait(tick)
            self._wake.clear()
            if self._stop.is_set():
                return
            now = time.monotonic()
            if self._due(now):
                self.beat()
            elif now - self._last_poll >= self.cancel_poll_s:
                self.poll()
            if self.lost:
                return

    # ----- lifetime -------------------------------------------------------------------------

    def start(self) -> LeaseKeeper:
        """Start the background thread (writes progress, renews the lease, polls cancel)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread (waits for a write in progress)."""
        self._stop.set()
        self._wake.set()
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
