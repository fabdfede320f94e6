"""Real worker processes (filesystem broker): crashes and time limits.

A worker killed with SIGKILL mid-job: the lease expires, the janitor re-queues the job, and a
fresh worker completes it exactly once. A job over the soft time limit fails with a clear error.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from service.config import load_settings
from service.jobs_dispatch import enqueue
from tests.service.e2e_support import (
    PLCERT,
    SLOW_OPTIONS,
    Proc,
    base_env,
    jobs_claimed_in,
    processes,
    wait_until,
)
from tests.worker.conftest import make_slow_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LEASE_S = 3.0


def test_job_of_a_killed_worker_is_requeued_and_completed_once_by_a_fresh_worker(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    settings = load_settings(data_dir=data_dir, lease_s=LEASE_S)
    store, job = make_slow_job(settings, SLOW_OPTIONS)
    env = base_env(PLCERT_DATA_DIR=str(data_dir), PLCERT_LEASE_S=str(LEASE_S))
    argv = [*PLCERT, "worker", "--queues", settings.queue_cpu, "--pool", "prefork"]

    with processes() as procs:
        first = Proc(argv, env, tmp_path / "worker-1.log")
        procs.append(first)
        enqueue(job, settings)

        def running() -> bool:
            current = store.get_job(job.id)
            assert current is not None
            assert current.status in ("queued", "running"), first.log_text()[-3000:]
            return current.status == "running"

        wait_until(running, timeout=120, what="the first worker to start the job")
        first.kill_group(signal.SIGKILL)  # the worker and its pool child, no goodbye

        second = Proc(argv, env, tmp_path / "worker-2.log")
        procs.append(second)

        def finished() -> bool:
            current = store.get_job(job.id)
            return current is not None and current.is_terminal

        wait_until(finished, timeout=240, interval=0.5, what="the job to finish on worker 2")
        done = store.get_job(job.id)
        assert done is not None
        assert done.status == "succeeded", (done.error, second.log_text()[-3000:])
        assert done.attempt == 2
        assert jobs_claimed_in(first.log_text(), job.id) == 1
        assert jobs_claimed_in(second.log_text(), job.id) == 1
        assert "re-queued" in second.log_text()
    store.dispose()


def test_job_over_the_soft_time_limit_fails_with_a_time_limit_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = load_settings(data_dir=data_dir, job_time_limit_s=1.0, job_hard_time_limit_s=60.0)
    store, job = make_slow_job(settings, SLOW_OPTIONS)
    env = base_env(
        PLCERT_DATA_DIR=str(data_dir),
        PLCERT_JOB_TIME_LIMIT_S="1",
        PLCERT_JOB_HARD_TIME_LIMIT_S="60",
    )
    argv = [*PLCERT, "worker", "--queues", settings.queue_cpu, "--pool", "prefork"]
    with processes() as procs:
        worker = Proc(argv, env, tmp_path / "worker.log")
        procs.append(worker)
        enqueue(job, settings)

        def finished() -> bool:
            current = store.get_job(job.id)
            return current is not None and current.is_terminal

        wait_until(finished, timeout=120, interval=0.3, what="the job to hit its time limit")
        done = store.get_job(job.id)
        assert done is not None and done.status == "failed", worker.log_text()[-3000:]
        assert done.error is not None and done.error["type"].endswith(":time-limit")
        assert "limit of 1 s" in done.error["detail"]
        assert done.attempt == 1
    store.dispose()


def test_a_job_over_the_memory_limit_fails_and_the_worker_takes_the_next(tmp_path: Path) -> None:
    import json

    from service.store.artifacts import ArtifactStore
    from service.store.jobs import JobStore
    from tests.worker.conftest import make_job

    data_dir = tmp_path / "data"
    settings = load_settings(data_dir=data_dir, worker_memory_limit="256MiB")
    settings.ensure_dirs()
    store = JobStore(settings.resolved_database_url)
    store.migrate()
    artifacts = ArtifactStore(settings.artifacts_dir)
    # 4.2 M parameters: its parameter-sized vectors alone are ~3 GiB (plcore.estimate.cost)
    spec = {"type": "mlp", "input_dim": 8, "widths": [2048, 2048], "output_dim": 1}
    xs = [[0.1 * i + 0.01 * j for j in range(8)] for i in range(32)]
    data = json.dumps({"X": xs, "y": [0.1 * i for i in range(32)]}).encode()
    big = make_job(store, artifacts, model=json.dumps(spec).encode(), data=data)
    small = make_job(store, artifacts)
    env = base_env(PLCERT_DATA_DIR=str(data_dir), PLCERT_WORKER_MEMORY_LIMIT="256MiB")
    argv = [*PLCERT, "worker", "--queues", settings.queue_cpu, "--pool", "prefork"]
    with processes() as procs:
        worker = Proc(argv, env, tmp_path / "worker.log")
        procs.append(worker)
        enqueue(big, settings)
        enqueue(small, settings)

        def finished() -> bool:
            jobs = [store.get_job(j.id) for j in (big, small)]
            return all(j is not None and j.is_terminal for j in jobs)

        wait_until(finished, timeout=180, interval=0.3, what="both jobs to finish")
        done_big, done_small = store.get_job(big.id), store.get_job(small.id)
        assert done_big is not None and done_big.status == "failed", worker.log_text()[-3000:]
        assert done_big.error is not None and done_big.error["type"].endswith(":out-of-memory")
        assert "out of memory: the job needed more than 0.25 GiB" in done_big.error["detail"]
        assert done_big.attempt == 1, worker.log_text()[-3000:]
        assert done_small is not None
        assert done_small.status == "succeeded", done_small.error
        assert worker.alive()
        assert done_small.worker_id == done_big.worker_id  # the same pool process (host:pid)
        assert jobs_claimed_in(worker.log_text(), big.id) == 1
    store.dispose()
