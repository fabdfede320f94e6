"""run_job: one delivery of a job, with real stores and the real numerical core."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from service.config import Settings
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobStore
from tests.service.e2e_support import SLOW_DATA, SLOW_OPTIONS, SLOW_SPEC
from tests.worker.conftest import make_job
from worker.tasks import resolve_device, retry_store, run_job


def _run(job_id: str, store: JobStore, artifacts: ArtifactStore, settings: Settings) -> str | None:
    return run_job(job_id, worker_id="t:1", store=store, artifacts=artifacts, settings=settings)


def test_a_tiny_job_succeeds_and_stores_both_reports(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    job = make_job(store, artifacts)
    assert _run(job.id, store, artifacts, settings) == "succeeded"
    done = store.get_job(job.id)
    assert done is not None and done.status == "succeeded" and done.attempt == 1
    assert done.report_ref and done.html_ref and done.progress_fraction == 1.0
    report = json.loads(artifacts.get(done.report_ref))
    assert report["verdict"] == done.verdict
    assert report["verdict"] in ("certified", "not_certified", "inconclusive")
    assert b"<html" in artifacts.get(done.html_ref).lower()


def test_a_second_delivery_of_a_finished_job_does_nothing(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    job = make_job(store, artifacts)
    assert _run(job.id, store, artifacts, settings) == "succeeded"
    first = store.get_job(job.id)
    assert _run(job.id, store, artifacts, settings) is None
    assert store.get_job(job.id) == first


def test_unreadable_model_fails_the_job_with_the_mapped_error(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    job = make_job(store, artifacts, model=b"{not json")
    assert _run(job.id, store, artifacts, settings) == "failed"
    failed = store.get_job(job.id)
    assert failed is not None and failed.error is not None
    assert failed.error["type"].endswith(":model-format")
    assert "JSON" in failed.error["detail"]


def test_invalid_options_fail_the_job_as_invalid_input(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    job = make_job(store, artifacts, options={"budget": "fast", "no_such_option": 1})
    assert _run(job.id, store, artifacts, settings) == "failed"
    failed = store.get_job(job.id)
    assert failed is not None and failed.error is not None
    assert failed.error["type"].endswith(":options")
    assert "no_such_option" in failed.error["detail"]


def test_a_job_canceled_while_queued_is_never_run(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    job = make_job(store, artifacts)
    store.request_cancel(job.id, tenant="default")
    assert _run(job.id, store, artifacts, settings) is None
    current = store.get_job(job.id)
    assert current is not None and current.status == "canceled" and current.attempt == 0


@pytest.mark.slow
def test_cancel_during_the_run_stops_it_with_status_canceled(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    job = make_job(
        store,
        artifacts,
        model=json.dumps(SLOW_SPEC).encode(),
        data=json.dumps(SLOW_DATA).encode(),
        options=SLOW_OPTIONS,
    )
    canceled_at: list[float] = []

    def cancel_once_running() -> None:
        for _ in range(600):
            current = store.get_job(job.id)
            if current is not None and current.status == "running":
                time.sleep(1.0)  # let it get into the computation
                store.request_cancel(job.id, tenant="default")
                canceled_at.append(time.monotonic())
                return
            if current is not None and current.is_terminal:
                return
            time.sleep(0.05)

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    status = _run(job.id, store, artifacts, settings)
    canceller.join()
    assert status == "canceled"
    assert time.monotonic() - canceled_at[0] < 15.0  # stopped at one of the next progress reports
    current = store.get_job(job.id)
    assert current is not None and current.status == "canceled" and current.report_ref is None


def test_device_auto_resolves_to_cpu_without_cuda_and_keeps_explicit_devices() -> None:
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"


def test_a_job_killed_at_the_hard_time_limit_is_failed_not_retried(
    store: JobStore,
    artifacts: ArtifactStore,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery.exceptions import TimeLimitExceeded

    from service.config import get_settings
    from worker import tasks

    monkeypatch.setenv("PLCERT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PLCERT_JOB_HARD_TIME_LIMIT_S", "7200")
    get_settings.cache_clear()
    monkeypatch.setattr(tasks, "_runtime", None)
    try:
        job = make_job(store, artifacts)
        assert store.claim(job.id, worker_id="w", lease_s=30) is not None
        # what Celery's main process calls after killing the pool process
        tasks.run_certification.on_failure(TimeLimitExceeded(7200), job.id, [job.id], {}, None)
    finally:
        get_settings.cache_clear()
    failed = store.get_job(job.id)
    assert failed is not None and failed.status == "failed" and failed.error is not None
    assert "7200 s (PLCERT_JOB_HARD_TIME_LIMIT_S)" in failed.error["detail"]


def test_a_finished_job_logs_the_wall_time_of_each_stage(
    store: JobStore,
    artifacts: ArtifactStore,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = make_job(store, artifacts)
    with caplog.at_level("INFO", logger="plcert.worker"):
        started = time.monotonic()
        assert _run(job.id, store, artifacts, settings) == "succeeded"
        elapsed = time.monotonic() - started
    line = next(r.getMessage() for r in caplog.records if "stage wall times" in r.getMessage())
    seconds = [float(s) for s in re.findall(r" (\d+\.\d+) s", line)]
    for stage in ("loading", "initial quantities", "hessian norm", "writing report"):
        assert f"{stage} " in line, line
    assert 0 < sum(seconds) <= elapsed + 0.05, line


def _connect_to_a_closed_port() -> None:
    from sqlalchemy import create_engine

    from tests.service.e2e_support import free_port

    engine = create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    with engine.connect():
        pass


def test_retry_store_waits_out_an_unreachable_database() -> None:
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            _connect_to_a_closed_port()  # a real refused connection: OperationalError
        return "written"

    assert retry_store(flaky, "test write", within_s=30) == "written"
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.5 and calls[2] - calls[1] >= 1.0  # backoff 0.5 s, 1 s


def test_retry_store_gives_up_after_its_window_and_never_retries_other_errors() -> None:
    from sqlalchemy.exc import OperationalError

    started = time.monotonic()
    with pytest.raises(OperationalError, match=r"Connection refused|connection failed"):
        retry_store(_connect_to_a_closed_port, "test write", within_s=1.0)
    assert time.monotonic() - started < 5
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bad query is not a restart")

    with pytest.raises(ValueError, match="not a restart"):
        retry_store(broken, "test write", within_s=30)
    assert calls == 1
