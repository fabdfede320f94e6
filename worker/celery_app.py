"""The Celery application of plcert's workers.

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

CUDA is never touched here: GPU workers run ``-P solo`` (or initialise CUDA in pool children).

Threads: every process that computes sets torch's intra- and inter-op threads to its share of
the usable cores (:mod:`service.threads`): a prefork pool child to ``cores / concurrency`` when it
starts (``worker_process_init``), a solo or threads pool at worker start (one process computes
all jobs; the threads pool's jobs share it). ``PLCERT_TORCH_THREADS`` overrides the share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown
from kombu import Exchange, Queue

from service.config import Settings, get_settings

TASK_NAME = "plcert.run_certification"
"""The registered name of :func:`worker.tasks.run_certification` (the API sends by name)."""


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
    this module must not create folders; the worker makes them when it starts).
    """
    transport = broker_transport_options(settings, create_dirs=create_dirs)
    app = Celery(
        "plcert", broker=settings.broker_url, include=["worker.tasks", "worker.study_tasks"]
    )
    cpu, gpu = settings.queue_cpu, settings.queue_gpu
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
        ),
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
        timezone="UTC",
    )
    return app


app = make_celery(get_settings(), create_dirs=False)


# ----- worker lifecycle: threads, schema, janitor ----------------------------------------------
# Connected here because this is the module `celery -A worker.celery_app worker` loads.
# Pool children never use the janitor's database engine; it stays referenced (never garbage
# collected there), so a child cannot close the parent's pooled sockets.

_janitor: Any = None
_pool_concurrency = 1  # set in the main process at worker_init; pool children inherit it
_threads_budgeted = False  # a solo / threads pool sets them at worker_init, once
_shared_process = False  # a threads pool with concurrency > 1: jobs share one process


def one_job_per_process() -> bool:
    """True where a process runs one job at a time (prefork, solo, threads with concurrency
    1): there a job may get a process-wide memory limit (:mod:`worker.memory`)."""
    return not _shared_process


def pool_kind(pool_cls: Any) -> str:
    """``"prefork"``, ``"solo"``, ``"threads"`` (or the class path) of a worker's pool."""
    path = pool_cls if isinstance(pool_cls, str) else f"{pool_cls.__module__}.{pool_cls.__name__}"
    for kind, marker in (("prefork", "prefork"), ("solo", "solo"), ("threads", "thread")):
        if marker in path.lower():
            return kind
    return path


@worker_init.connect
def _budget_threads(sender: Any = None, **_: Any) -> None:
    """Remember the concurrency for the pool children; a solo / threads pool sets threads now."""
    global _pool_concurrency, _threads_budgeted, _shared_process
    from service.threads import budget_torch_threads

    kind = pool_kind(getattr(sender, "pool_cls", "prefork"))
    concurrency = max(int(getattr(sender, "concurrency", 1) or 1), 1)
    _pool_concurrency = 1 if kind == "solo" else concurrency
    _shared_process = kind not in ("prefork", "solo") and concurrency > 1
    if kind != "prefork":
        override = get_settings().torch_threads
        budget_torch_threads(_pool_concurrency, override, role=f"worker ({kind} pool)")
        _threads_budgeted = True
        _warm_autodiff()  # the jobs run in this process


@worker_process_init.connect
def _budget_child_threads(**_: Any) -> None:
    """A prefork pool child: torch threads = usable cores / concurrency (or the override).

    Celery's solo pool sends ``worker_process_init`` too, in the main process whose threads
    ``_budget_threads`` already set: nothing to do there.
    """
    from service.threads import budget_torch_threads

    if _threads_budgeted:
        return

    override = get_settings().torch_threads
    budget_torch_threads(_pool_concurrency, override, role="worker pool process")


_autodiff_warm = False


@worker_process_init.connect
def _warm_autodiff(**_: Any) -> None:
    """Pay the lazy imports of the first second-order pass (1-3 s, not interruptible) before the
    first job (:func:`plcore.hessian.hvp.warm_up`); the solo pool sends this signal as well."""
    global _autodiff_warm
    from plcore.hessian.hvp import warm_up

    if not _autodiff_warm:
        warm_up()
        _autodiff_warm = True


@worker_init.connect
def _migrate_on_start(**_: Any) -> None:
    """Bring the job store's schema up to date before consuming (idempotent, lock-protected)."""
    from service.store.jobs import JobStore

    settings = get_settings()
    settings.ensure_dirs()
    broker_transport_options(settings, create_dirs=True)  # the filesystem broker's folders
    JobStore(settings.resolved_database_url).migrate()


@worker_ready.connect
def _start_janitor(**_: Any) -> None:
    """Every worker's main process sweeps for orphaned jobs (see worker.janitor)."""
    global _janitor
    from service.jobs_dispatch import enqueue
    from service.store.jobs import JobStore
    from worker.janitor import Janitor

    settings = get_settings()
    store = JobStore(settings.resolved_database_url)
    _janitor = Janitor(store, settings, lambda job: enqueue(job, settings)).start()


@worker_shutdown.connect
def _stop_janitor(**_: Any) -> None:
    if _janitor is not None:
        _janitor.stop()


@worker_process_init.connect
def _pool_child_dies_with_its_worker(**_: Any) -> None:
    """In the embedded worker, a pool child dies with the worker's main process (which itself
    dies with ``plcert serve``): no job runs on as an orphan after its serve is gone."""
    import os

    from worker.embedded import EMBEDDED_ENV, die_with_parent

    if os.environ.get(EMBEDDED_ENV) == "1":
        die_with_parent()
