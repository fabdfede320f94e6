"""Starting the webhook delivery of a job that reached a terminal state.

Called where a job ends: by the worker after it wrote the result, by the API after it canceled
a queued job. The janitor calls it too, for the ends that no such call saw (a job failed as
abandoned, a process that died between the result and the send). Marking the event pending is
a compare-and-set on the job, so an event is started once however many callers race; a lost
message is sent again by the janitor (:meth:`JobStore.due_webhooks`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from service.config import Settings

if TYPE_CHECKING:
    from service.store.jobs import JobStore

log = logging.getLogger("plcert.webhooks")


def notify_finished(store: JobStore, job_id: str, settings: Settings, *, app: Any = None) -> bool:
    """Mark the job's event pending and send its delivery task; True if this call started it.

    Nothing happens for a job without ``callback_url``, one not finished, deleted, or whose
    event was already started. ``app``: the Celery app to send with (a worker's own app inside
    a task); default the dispatch app of ``settings``. A failure (store or broker unreachable) is
    logged, not raised: the janitor starts the event later.
    """
    from worker.app import send_webhook

    try:
        if not store.mark_webhook_pending(job_id):
            return False
        send_webhook(job_id, settings, app=app)
    except Exception:
        log.warning("job %s: could not start the webhook; the janitor will", job_id, exc_info=True)
        return False
    return True
