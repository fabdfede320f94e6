"""Re-queues orphaned jobs: the safety net under the broker.

A job can be orphaned in two ways:

- **running, lease expired**: its worker died (SIGKILL, OOM, lost host) without acknowledging.
  Redis would hand the message back only after the visibility timeout (hours, by design), and
  the ``filesystem://`` broker never does (the message stays in ``processed/``).
- **queued, never claimed** for longer than ``PLCERT_QUEUED_ORPHAN_AFTER_S``: its message was
  lost (the broker was wiped, the API died between insert and send).

Every sweep moves expired running jobs back to queued (:meth:`JobStore.requeue`, a CAS) and sends
them again; stale queued jobs are re-sent at most once per that interval by each janitor. A
duplicate message is harmless: :meth:`JobStore.claim` lets exactly one delivery run, and after
``PLCERT_MAX_ATTEMPTS`` claims the job is failed instead of looping on a poison input.

The janitor also removes the files of deleted jobs that finished (``service.store.purge``), and
at most every :data:`RETENTION_INTERVAL_S` (first at its first sweep) deletes the jobs that
finished more than ``PLCERT_RETENTION_DAYS`` ago with their files (``service.store.retention``).
With the ``filesystem://`` broker it also deletes copies of consumed messages in
``{data_dir}/broker/processed`` once they are a day old (kombu keeps every one otherwise).

It also starts the webhook events that no one started or whose delivery message was lost
(:meth:`JobStore.due_webhooks`, at most once per :data:`WEBHOOK_GRACE_S` for each job).

The janitor runs as a daemon thread in every worker's main process and in ``plcert serve``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from service.config import Settings
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobRecord, JobStore
from service.store.purge import purge_deleted_artifacts
from service.store.retention import expire_jobs

log = logging.getLogger("plcert.janitor")

Enqueue = Callable[[JobRecord], None]
SendWebhook = Callable[[str], None]

WEBHOOK_GRACE_S = 60.0
"""An event finished (or due) this long ago with no delivery under way is started again."""


PROCESSED_RETENTION_S = 24 * 3600.0
RETENTION_INTERVAL_S = 3600.0
"""Seconds between two retention passes of one janitor (expiry is measured in days)."""


@dataclass
class SweepResult:
    """Job ids handled by one sweep, and the number of old broker files removed."""

    requeued: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    webhooks: list[str] = field(default_factory=list)
    """Ids of the jobs whose webhook delivery this sweep started or sent again."""
    pruned: int = 0
    purged_files: int = 0
    expired: list[str] = field(default_factory=list)
    """Ids of the jobs deleted by retention in this sweep (``PLCERT_RETENTION_DAYS``)."""


class Janitor:
    """Periodic orphan sweep (``sweep`` once, or ``start`` a daemon thread)."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        enqueue: Enqueue,
        *,
        interval_s: float | None = None,
        send_webhook: SendWebhook | None = None,
    ) -> None:
        self.store, self.settings, self.enqueue = store, settings, enqueue
        self.send_webhook = send_webhook or self._send_webhook_task
        self._webhook_sent_at: dict[str, float] = {}
        self.interval_s = interval_s or default_interval(settings)
        self._resent_at: dict[str, float] = {}
        self._retention_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self, now: datetime | None = None) -> SweepResult:
        """One pass over the orphaned jobs (see the module docstring)."""
        result = SweepResult()
        after = float(self.settings.queued_orphan_after_s)
        mono = time.monotonic()
        for job in self.store.orphaned_jobs(now, queued_after_s=after):
            if job.status == "running":
                if self.store.requeue(job.id):
                    log.warning(
                        "job %s: lease of attempt %d (worker %s) expired; re-queued",
                        job.id,
                        job.attempt,
                        job.worker_id,
                    )
                    self._send(job, result.requeued)
            elif job.status == "queued":
                last = self._resent_at.get(job.id)
                if last is None or mono - last >= after:
                    log.warning("job %s queued for over %g s unclaimed; re-sent", job.id, after)
                    self._resent_at[job.id] = mono
                    self._send(job, result.resent)
        if len(self._resent_at) > 10_000:  # forget old entries; a re-send is harmless anyway
            self._resent_at = {k: v for k, v in self._resent_at.items() if mono - v < after}
        self._start_webhooks(now, mono, result.webhooks)
        if self.settings.broker_url.startswith("filesystem://"):
            result.pruned = prune_processed(self.settings.broker_dir / "processed")
        # Files of jobs deleted while running, once they stopped (service.store.purge).
        artifacts = ArtifactStore(self.settings.artifacts_dir)
        days = float(self.settings.retention_days)
        if days > 0 and (
            self._retention_at is None or mono - self._retention_at >= RETENTION_INTERVAL_S
        ):
            self._retention_at = mono
            expired = expire_jobs(self.store, artifacts, retention_days=days, now=now)
            result.expired = [j.id for j in expired.jobs]
            result.purged_files += len(expired.files)
        result.purged_files += purge_deleted_artifacts(self.store, artifacts)
        return result

    def _send(self, job: JobRecord, into: list[str]) -> None:
        try:
            self.enqueue(job)
            into.append(job.id)
        except Exception:
            # The job stays queued; the next sweep (or any other janitor) sends it again.
            log.warning("job %s: could not send to the broker", job.id, exc_info=True)

    def _start_webhooks(self, now: datetime | None, mono: float, into: list[str]) -> None:
        for job_id in self.store.due_webhooks(now, grace_s=WEBHOOK_GRACE_S):
            last = self._webhook_sent_at.get(job_id)
            if last is not None and mono - last < WEBHOOK_GRACE_S:
                continue
            self._webhook_sent_at[job_id] = mono
            try:
                self.store.mark_webhook_pending(job_id)  # no-op when already pending
                self.send_webhook(job_id)
                into.append(job_id)
                log.warning("job %s: webhook delivery overdue; sent again", job_id)
            except Exception:
                log.warning("job %s: could not send its webhook task", job_id, exc_info=True)
        if len(self._webhook_sent_at) > 10_000:
            self._webhook_sent_at = {
                k: v for k, v in self._webhook_sent_at.items() if mono - v < WEBHOOK_GRACE_S
            }

    def _send_webhook_task(self, job_id: str) -> None:
        from worker.app import send_webhook

        send_webhook(job_id, self.settings)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:
                log.warning("janitor sweep failed", exc_info=True)

    def start(self) -> Janitor:
        """Sweep every ``interval_s`` seconds in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="plcert-janitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (returns after the sweep in progress, if any)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def prune_processed(folder: Path, max_age_s: float = PROCESSED_RETENTION_S) -> int:
    """Delete consumed-message copies older than ``max_age_s``; return how many went."""
    if not folder.is_dir():
        return 0
    cutoff = time.time() - max_age_s
    removed = 0
    for path in folder.glob("*.msg"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # another janitor got there first
    return removed


def default_interval(settings: Settings) -> float:
    """Half the lease, at most 30 s: an orphan waits at most 1.5 leases to be re-queued."""
    return max(0.5, min(float(settings.lease_s) / 2.0, 30.0))
