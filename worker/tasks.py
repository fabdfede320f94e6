"""The certification task: a thin adapter from a job id to one :func:`plcore.certify` call.

::

    job id -> claim (CAS: queued -> running, attempt += 1)   None: not ours, ack and return
           -> model / data bytes from the artifact store -> load_model / load_dataset
           -> certify(on_progress = lease heartbeat, should_cancel = cancel flag)
           -> report JSON + HTML into the artifact store -> finish (CAS on the attempt)

Every outcome is written by :meth:`JobStore.finish` with this attempt's number, so a duplicate
delivery, a re-claimed job or a late worker can never overwrite a newer state. Errors are mapped
to the job's ``error`` in one place (:mod:`worker.errors`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from plcore.errors import Cancelled
from service.config import Settings, get_settings
from service.errors import is_database_unavailable
from service.store.artifacts import ArtifactStore
from service.store.jobs import FinalStatus, JobRecord, JobStore
from service.validation import load_job_inputs
from service.webhooks.events import notify_finished
from worker.app import TASK_NAME
from worker.celery_app import app, one_job_per_process
from worker.errors import job_error, out_of_memory_error, time_limit_error
from worker.lease import LeaseKeeper
from worker.memory import is_out_of_memory, job_memory_limit

log = logging.getLogger("plcert.worker")
T = TypeVar("T")


@dataclass
class Runtime:
    """The stores of this process (built lazily, once per process: never shared over fork)."""

    settings: Settings
    store: JobStore
    artifacts: ArtifactStore
    pid: int


_runtime: Runtime | None = None
_inherited: list[Runtime] = []


def runtime() -> Runtime:
    """The stores for the current process (a forked pool child builds its own engine).

    A child keeps a reference to the parent's runtime so that it is never garbage collected
    there: collecting it would close database sockets that the parent still uses.
    """
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        if _runtime is not None:
            _inherited.append(_runtime)
        settings = get_settings()
        settings.ensure_dirs()
        _runtime = Runtime(
            settings=settings,
            store=JobStore(settings.resolved_database_url),
            artifacts=ArtifactStore(settings.artifacts_dir),
            pid=os.getpid(),
        )
    return _runtime


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; other values unchanged.

    Called in the process that computes (never in a prefork parent: CUDA does not survive fork).
    """
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_job(
    job_id: str,
    *,
    worker_id: str,
    store: JobStore,
    artifacts: ArtifactStore,
    settings: Settings,
    memory_limit: int | None = None,
) -> str | None:
    """Run one delivery of ``job_id``; return the final status written, or None if none was.

    None means the job was not claimable (already done, canceled, held by a live lease) or this
    attempt lost the job before it could finish. Never raises for a job's own failure.

    ``memory_limit``: bytes the job may add to this process's address space
    (:func:`worker.memory.job_memory_limit`); a failed allocation fails the job with an
    out-of-memory error and the process stays up. None: no limit (a process running several
    jobs at once, or the API's tests).
    """
    job = retry_store(
        lambda: store.claim(
            job_id,
            worker_id=worker_id,
            lease_s=settings.lease_s,
            max_attempts=settings.max_attempts,
        ),
        f"claim of job {job_id}",
    )
    if job is None:
        current = retry_store(lambda: store.get_job(job_id), f"read of job {job_id}")
        log.info(
            "job %s not claimable (status %s): delivery acknowledged without work",
            job_id,
            current.status if current else "unknown or deleted",
        )
        return None
    log.info("job %s claimed by %s (attempt %d)", job_id, worker_id, job.attempt)
    if memory_limit is not None and resolve_device(str(job.options.get("device", "cpu"))) != "cpu":
        memory_limit = None  # CUDA maps address space far beyond its use (worker.memory)
    started = time.monotonic()
    keeper = LeaseKeeper(store, job_id, job.attempt, lease_s=settings.lease_s)
    status: FinalStatus
    fields: dict[str, Any] = {}
    with keeper:
        try:
            if memory_limit is None:
                fields = _certify(job, keeper, artifacts)
            else:
                with job_memory_limit(memory_limit):
                    fields = _certify(job, keeper, artifacts)
            status = "succeeded"
        except SoftTimeLimitExceeded:
            status, fields = "failed", {"error": time_limit_error(settings.job_time_limit_s)}
        except Cancelled:
            if keeper.lost and not keeper.cancel_requested:
                log.warning("job %s attempt %d stopped: lease lost", job_id, job.attempt)
                return None
            status = "canceled"
        except Exception as exc:
            if memory_limit is not None and is_out_of_memory(exc):
                # The limit is lifted again here: the failed allocation's memory is gone.
                log.warning("job %s attempt %d: out of memory: %s", job_id, job.attempt, exc)
                status, fields = "failed", {"error": out_of_memory_error(memory_limit)}
            else:
                status, fields = "failed", {"error": job_error(exc)}
            if fields["error"]["type"].endswith(":internal"):
                log.exception("job %s attempt %d: unexpected error", job_id, job.attempt)
            else:
                log.info("job %s failed: %s", job_id, exc)
    attempt = job.attempt
    written = retry_store(
        lambda: store.finish(job_id, attempt=attempt, status=status, **fields),
        f"result of job {job_id}",
    )
    elapsed = time.monotonic() - started
    if not written:
        log.warning(
            "job %s attempt %d: result %s dropped (the job moved on: re-claimed, canceled "
            "or deleted)",
            job_id,
            job.attempt,
            status,
        )
        return None
    log.info("job %s %s after %.2f s (attempt %d)", job_id, status, elapsed, job.attempt)
    stages = ", ".join(f"{name} {sec:.2f} s" for name, sec in keeper.stage_seconds().items())
    log.info("job %s stage wall times: %s", job_id, stages or "none reported")
    return status


STORE_RETRY_S = 120.0
"""How long a claim or a result write waits for an unreachable job store (a database restart)
before the delivery gives up: the result of a finished computation is not thrown away because
PostgreSQL was restarting at the moment it ended."""


def retry_store(call: Callable[[], T], what: str, *, within_s: float = STORE_RETRY_S) -> T:
    """``call()``, retried with backoff (0.5 s doubling to 5 s) while it fails because the job
    store is unreachable (:func:`service.errors.is_database_unavailable`), for up to
    ``within_s`` seconds; any other error, or the last one, propagates.

    Safe for the store's compare-and-set writes: a claim or finish that did commit before its
    connection dropped is refused the second time (the state moved on), never applied twice.
    """
    deadline = time.monotonic() + within_s
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_database_unavailable(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning(
                "%s: job store unreachable (%s); retrying in %.1f s",
                what,
                type(exc).__name__,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2.0, 5.0)


def certify_options(raw: dict[str, Any]) -> Any:
    """``CertifyOptions`` from the job's stored options, with ``device="auto"`` resolved.

    Raises:
        OptionsError: the options fail validation (the API validates them too; this guards
            jobs stored by an older version).
    """
    from pydantic import ValidationError

    from plcore import CertifyOptions
    from plcore.errors import OptionsError

    options = dict(raw)
    options["device"] = resolve_device(str(options.get("device", "cpu")))
    try:
        return CertifyOptions(**options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise OptionsError(f"invalid options: {problems}") from None


def _certify(job: JobRecord, keeper: LeaseKeeper, artifacts: ArtifactStore) -> dict[str, Any]:
    from plcore import certify
    from plcore.report.html import render_html

    options = certify_options(job.options)
    keeper.on_progress(0.0, "loading")
    model, data = load_job_inputs(job, artifacts)
    report = certify(
        model,
        data,
        options,
        on_progress=keeper.on_progress,
        should_cancel=keeper.should_cancel,
    )
    keeper.on_progress(1.0, "writing report")
    # Both reports or neither: a full disk (StorageFull) fails the job as insufficient-storage.
    report_ref, html_ref = artifacts.put_all(
        [
            (report.model_dump_json(indent=2).encode("utf-8"), ".json"),
            (render_html(report).encode("utf-8"), ".html"),
        ]
    )
    return {"report_ref": report_ref, "html_ref": html_ref, "verdict": str(report.verdict)}


def worker_id_for(hostname: str | None) -> str:
    """``celery-node-name:pid`` (the pid tells the pool children apart)."""
    return f"{hostname or socket.gethostname()}:{os.getpid()}"


class CertificationTask(Task):
    """Task base: a job whose pool process was killed at the hard time limit is failed here.

    Celery calls ``on_failure`` in the worker's main process when it kills a pool process at
    ``task_time_limit`` (the job could not stop at the soft limit). Without this the job would
    wait for its lease to expire and run again, up to ``PLCERT_MAX_ATTEMPTS`` times.
    """

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if not isinstance(exc, TimeLimitExceeded):
            return
        job_id = str(args[0]) if args else task_id
        rt = runtime()
        job = rt.store.get_job(job_id)
        if job is not None and job.status == "running":
            limit = rt.settings.job_hard_time_limit_s
            error = time_limit_error(limit, "PLCERT_JOB_HARD_TIME_LIMIT_S")
            if rt.store.finish(job_id, attempt=job.attempt, status="failed", error=error):
                notify_finished(rt.store, job_id, rt.settings, app=self.app)
            log.warning("job %s killed at the hard time limit: failed", job_id)


@app.task(name=TASK_NAME, bind=True, ignore_result=True, base=CertificationTask)
def run_certification(self: Task, job_id: str) -> str | None:
    """Celery entry point (task id = job id); see :func:`run_job`."""
    rt = runtime()
    status = run_job(
        job_id,
        worker_id=worker_id_for(self.request.hostname),
        store=rt.store,
        artifacts=rt.artifacts,
        settings=rt.settings,
        memory_limit=rt.settings.worker_memory_limit if one_job_per_process() else None,
    )
    if status is not None:  # the job ended here: its webhook, if it has a callback_url
        notify_finished(rt.store, job_id, rt.settings, app=self.app)
    return status
