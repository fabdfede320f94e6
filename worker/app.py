"""The one home of plcert's Celery app: how it is built, the task names, and sending jobs.

Both sides import this module and nothing else of each other: the API
(:mod:`service.jobs_dispatch`) to send jobs and ping workers, the worker
(:mod:`worker.celery_app`, :mod:`worker.tasks`) to consume them and, in its janitor, to send
them again. At import time it reads nothing but :mod:`service.config`; the job record type is
imported for type checking only.

Reliability settings (see PITFALLS.md, "Celery"):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after the
  task returned, so a worker that dies mid-job hands the message back (Redis), and
  ``worker_prefetch_multiplier = 1`` keeps a busy worker from hoarding queued jobs.
- A running job is NOT cancelled when the broker connection drops
  (``worker_cancel_long_running_tasks_on_connection_loss = False``, unlike Celery's advice): the
  job needs only the job store, so it finishes and writes its result; its late ack is lost with
  the old connection, and the message, once redelivered, finds the job finished (the claim is a
  CAS). Cancelling would rerun every running job after each broker restart, spending an attempt
  of ``PLCERT_MAX_ATTEMPTS`` each time.
- Soft and hard time limits from the settings; the Redis ``visibility_timeout`` is kept well above
  the hard limit, or Redis would hand a long job to a second worker while the first still runs.
- No result backend: job state lives in the job store (``service.store.jobs``), written
  compare-and-set with an attempt counter; the task id is the job id.
- ``filesystem://`` (embedded mode) keeps its folders under ``{data_dir}/broker``; with
  ``control_folder`` set, ping / revoke / inspect work across processes. A message in flight when
  the whole worker dies stays in ``processed/``: the job store's lease and the janitor
  (:mod:`worker.janitor`) re-queue such jobs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu import Exchange, Queue

from service.config import Settings, get_settings

if TYPE_CHECKING:
    from service.store.jobs import JobRecord

log = logging.getLogger("plcert.dispatch")

TASK_NAME = "plcert.run_certification"
"""The registered name of :func:`worker.tasks.run_certification` (the API sends by name)."""

WEBHOOK_TASK_NAME = "plcert.deliver_webhook"
"""The registered name of :func:`worker.webhooks.deliver_webhook` (its own queue,
``PLCERT_QUEUE_WEBHOOKS``)."""

TASK_MODULES = ("worker.tasks", "worker.webhooks", "worker.study_tasks")
"""The modules that register plcert's tasks (loaded by a worker when it starts)."""


def filesystem_broker_options(broker_dir: Path, *, create: bool = True) -> dict[str, Any]:
    """Transport options of the ``filesystem://`` broker, with its folders under ``broker_dir``
    (created when ``create``; kombu does not create them).

    Producers and consumers share one folder (``queue``) for both directions; processed
    messages are kept in ``processed`` (the janitor's fallback evidence), exchange tables in
    ``control`` (what makes broadcast commands such as ping and revoke work).
    """
    queue_dir = broker_dir / "queue"
    processed = broker_dir / "processed"
    control = broker_dir / "control"
    if create:
        for d in (queue_dir, processed, control):
            d.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue_dir),
        "data_folder_out": str(queue_dir),
        "store_processed": True,
        "processed_folder": str(processed),
        "control_folder": str(control),
    }


def broker_transport_options(settings: Settings, *, create_dirs: bool = True) -> dict[str, Any]:
    """Transport options for the configured broker.

    For Redis the visibility timeout is max(2 * hard limit, hard limit + 600 s): a message is
    redelivered only long after any legitimate run of it must have ended.
    """
    scheme = settings.broker_url.split("://", 1)[0]
    if scheme == "filesystem":
        return filesystem_broker_options(settings.broker_dir, create=create_dirs)
    if scheme in ("redis", "rediss"):
        hard = float(settings.job_hard_time_limit_s)
        return {
            "visibility_timeout": int(max(2 * hard, hard + 600)),
            "socket_keepalive": True,
            "health_check_interval": 30,
        }
    return {}


def make_celery(settings: Settings, *, create_dirs: bool = True) -> Celery:
    """Build the Celery app for ``settings`` (broker, queues, limits; no result backend).

    ``create_dirs=False`` leaves the filesystem broker's folders to be made later (importing
    the worker's module must not create folders; the worker makes them when it starts).
    """
    transport = broker_transport_options(settings, create_dirs=create_dirs)
    app = Celery("plcert", broker=settings.broker_url, include=list(TASK_MODULES))
    cpu, gpu, hooks = settings.queue_cpu, settings.queue_gpu, settings.queue_webhooks
    app.conf.update(
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,  # see the docstring
        task_soft_time_limit=float(settings.job_time_limit_s),
        task_time_limit=float(settings.job_hard_time_limit_s),
        task_default_queue=cpu,
        task_default_exchange=cpu,
        task_default_routing_key=cpu,
        task_queues=(
            Queue(cpu, Exchange(cpu), routing_key=cpu),
            Queue(gpu, Exchange(gpu), routing_key=gpu),
            Queue(hooks, Exchange(hooks), routing_key=hooks),
        ),
        # Deliveries (and their retries) never wait behind queued certifications.
        task_routes={WEBHOOK_TASK_NAME: {"queue": hooks, "routing_key": hooks}},
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
        timezone="UTC",
    )
    return app


_apps: dict[tuple[object, ...], Celery] = {}
_lock = threading.Lock()


def _key(settings: Settings) -> tuple[object, ...]:
    return (
        settings.broker_url,
        str(settings.broker_dir),
        settings.queue_cpu,
        settings.queue_gpu,
        settings.queue_webhooks,
        settings.job_time_limit_s,
        settings.job_hard_time_limit_s,
    )


def celery_app(settings: Settings | None = None) -> Celery:
    """A Celery app for sending, configured like the workers' (cached per broker
    configuration; creates the filesystem broker's folders)."""
    settings = settings or get_settings()
    key = _key(settings)
    with _lock:
        if key not in _apps:
            _apps[key] = make_celery(settings)
        return _apps[key]


def enqueue(job: JobRecord, settings: Settings | None = None) -> None:
    """Send ``job`` to its queue (task id = job id). No-op when PLCERT_DISPATCH=none."""
    settings = settings or get_settings()
    if settings.dispatch == "none":
        return
    celery_app(settings).send_task(TASK_NAME, args=[job.id], task_id=job.id, queue=job.queue)
    log.info("job %s sent to queue %s", job.id, job.queue)


def send_webhook(
    job_id: str, settings: Settings | None = None, *, app: Celery | None = None
) -> None:
    """Send the delivery task of ``job_id``'s terminal event (queue ``PLCERT_QUEUE_WEBHOOKS``).
    ``app``: the sending app (a worker's own inside a task). No-op when PLCERT_DISPATCH=none."""
    settings = settings or get_settings()
    if settings.dispatch == "none":
        return
    sender = app if app is not None else celery_app(settings)
    sender.send_task(WEBHOOK_TASK_NAME, args=[job_id], queue=settings.queue_webhooks)
    log.info("webhook of job %s sent to queue %s", job_id, settings.queue_webhooks)


def enqueue_group(jobs: Sequence[JobRecord], settings: Settings | None = None) -> None:
    """Send ``jobs`` as one Celery group (a comparison's members: each message is the same as
    :func:`enqueue` sends, task id = job id). No-op when PLCERT_DISPATCH=none."""
    from celery import group

    settings = settings or get_settings()
    if settings.dispatch == "none" or not jobs:
        return
    app = celery_app(settings)
    group(
        app.signature(TASK_NAME, args=[job.id], task_id=job.id, queue=job.queue) for job in jobs
    ).apply_async()
    log.info("jobs %s sent as a group", ", ".join(job.id for job in jobs))
