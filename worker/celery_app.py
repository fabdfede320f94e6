"""The Celery app of plcert's workers: the module ``celery -A worker.celery_app worker`` loads.

The app is built by :func:`worker.app.make_celery` (its one home, shared with the API; the
reliability settings are described there). This module holds the worker's instance and its
lifecycle: threads, schema migration, the janitor.

CUDA is never touched here: GPU workers run ``-P solo`` (or initialise CUDA in pool children).

Threads: every process that computes sets torch's intra- and inter-op threads to its share of
the usable cores (:mod:`service.threads`): a prefork pool child to ``cores / concurrency`` when it
starts (``worker_process_init``), a solo or threads pool at worker start (one process computes
all jobs; the threads pool's jobs share it). ``PLCERT_TORCH_THREADS`` overrides the share.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

from service.config import get_settings
from worker.app import broker_transport_options, make_celery

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
    from plcore.progress import prime_threads

    if not _autodiff_warm:
        warm_up()
        # OpenMP teams now, not under a job's address-space limit (plcore.progress)
        prime_threads()
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
    from service.store.jobs import JobStore
    from worker.app import enqueue
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
