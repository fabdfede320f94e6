"""The worker command line and the supervised embedded worker of `plcert serve`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
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


_STUBBORN_WORKER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a warm shutdown that waits for its job
child = os.fork()
if child == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the pool child running the job
    time.sleep(600)
    os._exit(0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{os.getpid()} {child}")
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone for our purpose
        return fh.read().split(") ")[-1][0] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")
def test_stop_leaves_no_worker_process_behind(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    embedded = EmbeddedWorker(queues=["cpu"])
    embedded.argv = [sys.executable, "-c", _STUBBORN_WORKER, str(pids_file)]
    embedded.start()
    try:
        wait_until(lambda: pids_file.exists() and pids_file.read_text(), timeout=20, what="pids")
        main, child = (int(p) for p in pids_file.read_text().split())
        assert os.getsid(main) == main  # its own session: serve's group signals miss it
        assert _alive(main) and _alive(child)
    finally:
        embedded.stop(timeout_s=0.5)
    wait_until(lambda: not _alive(child), timeout=10, what="the pool child to be gone")
    assert not _alive(main)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")
def test_the_worker_dies_with_a_serve_that_was_killed(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    serve = (
        "import sys, time\n"
        "from worker.embedded import EmbeddedWorker\n"
        "w = EmbeddedWorker(queues=['cpu'])\n"
        f"w.argv = [sys.executable, '-c', {_STUBBORN_WORKER!r}, {str(pids_file)!r}]\n"
        "w.start()\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", serve], env=base_env())
    try:
        wait_until(lambda: pids_file.exists() and pids_file.read_text(), timeout=30, what="pids")
        main = int(pids_file.read_text().split()[0])
        proc.kill()  # no chance to stop its worker
        wait_until(lambda: not _alive(main), timeout=10, what="the worker to die with serve")
    finally:
        proc.kill()
        proc.wait()
        if pids_file.exists() and pids_file.read_text():
            # the stub's child has no Celery pool hook (that hook is tested on its own)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pids_file.read_text().split()[0]), signal.SIGKILL)


_POOL_PARENT = """
import os, sys, time
child = os.fork()
if child == 0:
    from worker.celery_app import _pool_child_dies_with_its_worker
    _pool_child_dies_with_its_worker()  # what Celery runs in each pool child
    open(sys.argv[1], "w").write(str(os.getpid()))
    time.sleep(600)
    os._exit(0)
time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")
def test_an_embedded_pool_child_dies_with_its_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    env = base_env(PLCERT_EMBEDDED_WORKER="1", PLCERT_DATA_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-c", _POOL_PARENT, str(pid_file)], env=env, start_new_session=True
    )
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=60, what="child")
        child = int(pid_file.read_text())
        proc.kill()  # the worker's main process dies
        wait_until(lambda: not _alive(child), timeout=10, what="the pool child to die with it")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
