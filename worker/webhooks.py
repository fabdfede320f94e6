"""The webhook delivery task: one attempt per message, retried with exponential backoff.

::

    job id -> claim the next attempt (CAS on the job: pending, due; attempts + 1)  None: ack
           -> event body (the job's public view) signed with the tenant's secret
           -> POST (service.webhooks.delivery) -> log the attempt, move the event to
              delivered | failed (after PLCERT_WEBHOOK_MAX_ATTEMPTS) | pending + next time
           -> pending: Celery retry with countdown = the backoff delay

A message that finds nothing due (the event delivered, a duplicate message, an attempt held by
another worker) does nothing. A lost retry message is sent again by the janitor once its
attempt is overdue (:meth:`JobStore.due_webhooks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from celery import Task

from service.config import Settings
from service.schemas import CertificationJob
from service.store.jobs import DeliveryRecord, JobStore
from service.store.records import utcnow
from service.webhooks.delivery import (
    DeliveryOutcome,
    event_body,
    event_id,
    event_type,
    post_event,
    retry_delay,
)
from service.webhooks.signing import signed_headers
from worker.app import WEBHOOK_TASK_NAME
from worker.celery_app import app
from worker.tasks import runtime

log = logging.getLogger("plcert.webhooks")

Poster = Callable[..., DeliveryOutcome]


@dataclass(frozen=True)
class DeliveryStep:
    """What one run of :func:`deliver_once` did."""

    attempt: int
    outcome: DeliveryOutcome
    webhook_status: str
    retry_in_s: float | None


def hold_s(settings: Settings) -> float:
    """How long a started attempt keeps other messages off (its longest possible run)."""
    return 3 * float(settings.webhook_timeout_s) + 30.0


def deliver_once(
    job_id: str, *, store: JobStore, settings: Settings, post: Poster = post_event
) -> DeliveryStep | None:
    """Run the due delivery attempt of ``job_id``'s event, if one is due (module docstring)."""
    job = store.claim_webhook_attempt(
        job_id, hold_s=hold_s(settings), max_attempts=settings.webhook_max_attempts
    )
    if job is None or job.callback_url is None:
        return None
    attempt = job.webhook_attempts
    kind = event_type(job.status)
    finished = (job.finished_at or job.updated_at).isoformat().replace("+00:00", "Z")
    body = event_body(kind, finished, CertificationJob.from_record(job).model_dump(mode="json"))
    msg_id = event_id(job.id)
    secret = store.webhook_secret(job.tenant).secret
    attempted_at = utcnow()
    headers = signed_headers(secret, msg_id, int(time.time()), body)
    outcome = post(
        job.callback_url,
        body,
        headers,
        timeout_s=settings.webhook_timeout_s,
        allow_private=settings.webhook_allow_private,
    )
    retry_in: float | None = None
    if outcome.succeeded:
        status = "delivered"
    elif attempt >= settings.webhook_max_attempts:
        status = "failed"
    else:
        status = "pending"
        retry_in = retry_delay(
            attempt, base_s=settings.webhook_retry_base_s, max_s=settings.webhook_retry_max_s
        )
    record = DeliveryRecord(
        job_id=job.id,
        attempt=attempt,
        event_id=msg_id,
        event_type=kind,
        url=job.callback_url,
        attempted_at=attempted_at,
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=outcome.duration_ms,
        response_prefix=outcome.response_prefix,
        succeeded=outcome.succeeded,
    )
    next_at = utcnow() + timedelta(seconds=retry_in) if retry_in is not None else None
    if not store.record_delivery(record, webhook_status=status, next_at=next_at):
        log.warning("job %s: webhook attempt %d outcome dropped (stale)", job_id, attempt)
        return None
    log.info(
        "job %s: webhook attempt %d to %s: %s (%s)",
        job_id,
        attempt,
        job.callback_url,
        outcome.status_code or outcome.error,
        status,
    )
    return DeliveryStep(attempt, outcome, status, retry_in)


@app.task(
    name=WEBHOOK_TASK_NAME,
    bind=True,
    ignore_result=True,
    soft_time_limit=240,
    time_limit=300,
)
def deliver_webhook(self: Task, job_id: str) -> str | None:
    """Celery entry point: one attempt; a failed one schedules the next as a retry."""
    rt = runtime()
    step = deliver_once(job_id, store=rt.store, settings=rt.settings)
    if step is None:
        return None
    if step.retry_in_s is not None:
        raise self.retry(countdown=step.retry_in_s, max_retries=None)
    return step.webhook_status
