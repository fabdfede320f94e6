"""The worker command line and the supervised embedded worker of `plcert serve`."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from service.config import load_settings
from service.jobs_dispatch import live_workers
from tests.service.e2e_support import base_env, wait_until
from worker.embedded import EmbeddedWorker, worker_argv


def test_worker_argv_gives_each_process_its_own_node_name() -> None:
    a = worker_argv(queues=["cpu", "gpu"], concurrency=2, pool="prefork")
    b = worker_argv(queues=["cpu"], concurrency=2, pool="prefork")
    name_a, name_b = a[a.index("--hostname") + 1], b[b.index("--hostname") + 1]
    assert name_a != name_b and name_a.endswith("@%h")
    assert a[a.index("--queues") + 1] == "cpu,gpu"


def test_solo_pool_runs_one_job_at_a_time() -> None:
    argv = worker_argv(queues=["gpu"], concurrency=4, pool="solo")
    assert argv[argv.index("--concurrency") + 1] == "1"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"concurrency": 0, "pool": "prefork"}, "concurrency must be >= 1, got 0"),
        ({"concurrency": 1, "pool": "gevent"}, "pool must be prefork, solo or threads"),
    ],
)
def test_worker_argv_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        worker_argv(queues=["cpu"], **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.e2e
def test_embedded_worker_is_restarted_after_it_dies(tmp_path: Path) -> None:
    env = base_env(PLCERT_DATA_DIR=str(tmp_path))
    settings = load_settings(data_dir=tmp_path)
    embedded = EmbeddedWorker(queues=["cpu"], env=env, pool="solo").start()
    try:
        wait_until(lambda: live_workers(settings, 1.0) == 1, timeout=90, what="worker ping")
        assert embedded.process is not None
        first = embedded.process.pid
        os.kill(first, signal.SIGKILL)
        wait_until(
            lambda: embedded.process is not None and embedded.process.pid != first,
            timeout=30,
            what="a new worker process",
        )
        wait_until(lambda: live_workers(settings, 1.0) >= 1, timeout=90, what="new worker ping")
    finally:
        embedded.stop(timeout_s=20)
    assert embedded.process is not None and embedded.process.poll() is not None
