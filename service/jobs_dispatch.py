"""Sending jobs to the workers, and asking whether any worker is listening.

The API calls :func:`enqueue` right after :meth:`JobStore.create_job`. The message carries only
the job id (also the Celery task id); everything else is read from the job store by the worker.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from service.config import Settings, get_settings

if TYPE_CHECKING:
    from celery import Celery

    from service.store.jobs import JobRecord

log = logging.getLogger("plcert.dispatch")

_apps: dict[tuple[object, ...], Celery] = {}
_lock = threading.Lock()


def _key(settings: Settings) -> tuple[object, ...]:
    return (
        settings.broker_url,
        str(settings.broker_dir),
        settings.queue_cpu,
        settings.queue_gpu,
        settings.job_time_limit_s,
        settings.job_hard_time_limit_s,
    )


def celery_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured like the workers' (cached per broker configuration)."""
    from worker.celery_app import make_celery

    settings = settings or get_settings()
    key = _key(settings)
    with _lock:
        if key not in _apps:
            _apps[key] = make_celery(settings)
        return _apps[key]


def enqueue(job: JobRecord, settings: Settings | None = None) -> None:
    """Send ``job`` to its queue (task id = job id). No-op when PLCERT_DISPATCH=none."""
    from worker.celery_app import TASK_NAME

    settings = settings or get_settings()
    if settings.dispatch == "none":
        return
    celery_app(settings).send_task(TASK_NAME, args=[job.id], task_id=job.id, queue=job.queue)
    log.info("job %s sent to queue %s", job.id, job.queue)


def live_workers(settings: Settings | None = None, timeout: float = 1.0) -> int:
    """Number of workers that answer a broadcast ping within ``timeout`` seconds (0 on error)."""
    try:
        replies = celery_app(settings).control.ping(timeout=timeout)
    except Exception:
        log.warning("worker ping failed", exc_info=True)
        return 0
    return len(replies or [])


def broker_ok(settings: Settings | None = None, timeout: float = 2.0) -> bool:
    """True when the broker accepts a connection (for /readyz)."""
    settings = settings or get_settings()
    if settings.broker_url.startswith("filesystem://"):
        import os

        celery_app(settings)  # creates the broker folders
        folder = settings.broker_dir / "queue"
        return folder.is_dir() and os.access(folder, os.W_OK)
    try:
        with celery_app(settings).connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:
        log.warning("broker %s unreachable", settings.broker_url.split("@")[-1], exc_info=True)
        return False


broker_ping = broker_ok
"""Alias used by ``/readyz``."""
