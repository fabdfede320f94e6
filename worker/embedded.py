"""Starting workers: in this process (``plcert worker``) or as a supervised child process
(``plcert serve``, the embedded mode).

The embedded worker is a separate process, not a thread, for three reasons: Celery's time limits
and crash handling need a real pool; a job that exhausts memory must not take the API down; and
the API process may then use threads freely (no fork after threads).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence

log = logging.getLogger("plcert.worker")

Pool = str  # "prefork" | "solo" | "threads"


def worker_argv(
    *, queues: Sequence[str], concurrency: int, pool: Pool, loglevel: str = "INFO"
) -> list[str]:
    """Arguments of ``celery worker`` for plcert.

    The node name is unique per process (``plcert-<random>@<host>``) so that several workers on one
    host answer pings separately. Mingle and gossip are off: job state lives in the job store,
    not in Celery's revoked-task lists, and they slow start-up down.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if pool not in ("prefork", "solo", "threads"):
        raise ValueError(f"pool must be prefork, solo or threads, got {pool!r}")
    return [
        "worker",
        "--queues",
        ",".join(queues),
        "--concurrency",
        str(1 if pool == "solo" else concurrency),
        "--pool",
        pool,
        "--loglevel",
        loglevel,
        "--hostname",
        f"plcert-{uuid.uuid4().hex[:8]}@%h",
        "--without-mingle",
        "--without-gossip",
    ]


def run_worker(
    *, queues: Sequence[str], concurrency: int, pool: Pool, loglevel: str = "INFO"
) -> None:
    """Run a Celery worker in this process until it is stopped (SIGTERM: warm shutdown)."""
    from worker.celery_app import app

    app.worker_main(
        argv=worker_argv(queues=queues, concurrency=concurrency, pool=pool, loglevel=loglevel)
    )


EMBEDDED_ENV = "PLCERT_EMBEDDED_WORKER"
"""Set to ``1`` in the embedded worker's environment: its pool children then die with it."""


def die_with_parent(sig: int = signal.SIGKILL) -> None:  # pragma: no cover - in children
    """Linux: ask the kernel to send ``sig`` to this process when its parent dies (even by
    SIGKILL), so that no worker process outlives the one that started it."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class EmbeddedWorker:
    """A worker child process, restarted when it dies unexpectedly (see the module docstring)."""

    def __init__(
        self,
        *,
        queues: Sequence[str],
        concurrency: int = 1,
        pool: Pool = "prefork",
        loglevel: str = "INFO",
        env: dict[str, str] | None = None,
        max_restarts_per_minute: int = 5,
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "worker",
            *worker_argv(queues=queues, concurrency=concurrency, pool=pool, loglevel=loglevel),
        ]
        self.env = dict(env if env is not None else os.environ)
        self.max_restarts_per_minute = max_restarts_per_minute
        self.process: subprocess.Popen[bytes] | None = None
        self._restarts: list[float] = []
        self._stopping = threading.Event()
        self._watch: threading.Thread | None = None

    def _spawn(self) -> None:
        on_linux = sys.platform == "linux"
        # Its own process group: a signal to serve's group (Ctrl-C, SIGTERM from a supervisor)
        # reaches serve alone, which then stops the whole worker group itself (see stop()).
        self.process = subprocess.Popen(
            self.argv,
            env={**self.env, EMBEDDED_ENV: "1"},
            preexec_fn=die_with_parent if on_linux else None,
            start_new_session=True,
        )
        log.info("embedded worker started (pid %d)", self.process.pid)

    def start(self) -> EmbeddedWorker:
        """Start the child and a thread that restarts it if it exits while serving."""
        self._spawn()
        self._watch = threading.Thread(target=self._supervise, name="worker-watch", daemon=True)
        self._watch.start()
        return self

    def _supervise(self) -> None:
        while not self._stopping.wait(1.0):
            proc = self.process
            if proc is None or proc.poll() is None:
                continue
            if self._stopping.is_set():
                return
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < 60]
            if len(self._restarts) >= self.max_restarts_per_minute:
                log.error(
                    "embedded worker exited with %s and restarted %d times in a minute: "
                    "giving up; jobs stay queued",
                    proc.returncode,
                    len(self._restarts),
                )
                return
            log.warning("embedded worker exited with %s: restarting it", proc.returncode)
            self._restarts.append(now)
            self._spawn()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Warm shutdown (SIGTERM); after ``timeout_s`` a kill of the worker's whole process
        group, pool children included (a warm shutdown waits for a running job, and killing
        the main process alone left its pool child running the job as an orphan). A job cut
        off this way keeps its lease until it expires; the next start re-queues it."""
        self._stopping.set()
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("embedded worker did not stop within %g s: killing it", timeout_s)
        _kill_group(proc.pid)
        if proc.poll() is None:
            proc.wait(timeout=10)
        if self._watch is not None:
            self._watch.join(timeout=5)


def _kill_group(pgid: int) -> None:
    """SIGKILL every process left in the group ``pgid`` (the worker and its pool children)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
