"""Sending jobs to the workers, and asking whether any worker is listening.

The API calls :func:`enqueue` right after :meth:`JobStore.create_job`. The message carries only
the job id (also the Celery task id); everything else is read from the job store by the worker.
The Celery app itself lives in :mod:`worker.app`, which the workers import too; nothing here is
imported by the worker side.
"""

from __future__ import annotations

import logging
import os

from service.config import Settings, get_settings
from worker.app import celery_app, enqueue, enqueue_group

__all__ = ["broker_ok", "broker_ping", "celery_app", "enqueue", "enqueue_group", "live_workers"]

log = logging.getLogger("plcert.dispatch")


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
