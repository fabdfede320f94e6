"""Helpers for end-to-end tests that start real server and worker processes.

Every process is started in its own session (process group) and killed as a group at the end,
so a failing test leaves nothing running. Logs go to files that a failing assertion can show.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT

PLCERT = [sys.executable, "-c", "from service.cli import main; main()"]

# A tiny problem: 8 samples, 2 inputs, 24 parameters: "fast" certifies it in seconds.
TINY_SPEC: dict[str, Any] = {
    "type": "mlp",
    "input_dim": 2,
    "widths": [16],
    "output_dim": 1,
    "activation": "tanh",
    "seed": 0,
}
TINY_DATA: dict[str, Any] = {
    "X": [[((3 * i) % 8) / 8 - 0.5, ((5 * i) % 8) / 8 - 0.5] for i in range(8)],
    "y": [((7 * i) % 8) / 8 - 0.5 for i in range(8)],
}
# A job that is still running seconds after it started (to cancel it, or kill its worker):
# even the tiny problem takes several seconds with budget "fast"; this one a little longer.
SLOW_SPEC: dict[str, Any] = {**TINY_SPEC, "widths": [32, 32], "seed": 1}
SLOW_DATA: dict[str, Any] = {
    "X": [[((i * 7 + j * 3) % 13) / 13 - 0.5 for j in range(2)] for i in range(16)],
    "y": [((i * 3) % 5) / 5 - 0.4 for i in range(16)],
}
# long enough (about 5 s on one quiet core, most of it GD steps, each a cancellation point) that
# a test can catch the job running (status polls are 0.2 s apart at most): the "fast" budget
# alone now ends in under 3 s
SLOW_OPTIONS: dict[str, Any] = {"budget": "fast", "validation_steps": 10_000}


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def uvicorn_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread on a free loopback port; yields its URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def base_env(**extra: str) -> dict[str, str]:
    """The environment of a child: this one, minus PLCERT_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLCERT_")}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
        PLCERT_LOG_JSON="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Proc:
    """A child process in its own process group, logging to a file."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = list(argv), env, log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            env=env,
            cwd=ROOT,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill_leader(self, sig: int = signal.SIGKILL) -> None:
        """Signal only the process started (not its children)."""
        with suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the process and every child it started)."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the group, then SIGKILL after ``grace_s``; always closes the log."""
        try:
            self.kill_group(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace_s)
            self.kill_group(signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
            _wait_group_gone(self.pid, 10.0)
        finally:
            self._fh.close()


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)


@contextmanager
def processes() -> Iterator[list[Proc]]:
    """A list to append started processes to; all are stopped on exit."""
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()


def wait_until(
    check: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError) as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last_exc})")


def wait_ready(url: str, proc: Proc, timeout: float = 120.0) -> None:
    """Wait for /readyz to answer 200 (database, broker and a live worker)."""

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"server exited with {proc.popen.returncode}:\n{proc.log_text()}")
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200

    try:
        wait_until(ready, timeout=timeout, interval=0.5, what=f"{url}/readyz")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- log ---\n{proc.log_text()[-4000:]}") from None


@dataclass
class Embedded:
    """A running `plcert serve` (API and embedded worker) and how to restart it on the same
    data folder; ``env`` adds settings (``PLCERT_*``) to its environment."""

    data_dir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> Proc:
        return self.procs[-1]

    def start(self) -> None:
        env = base_env(PLCERT_DATA_DIR=str(self.data_dir), PLCERT_LEASE_S="5", **self.env)
        log = self.data_dir.parent / f"serve-{len(self.procs)}.log"
        self.procs.append(Proc([*PLCERT, "serve", "--port", str(self.port)], env, log))
        wait_ready(self.url, self.proc)

    def logs(self) -> str:
        return "\n".join(p.log_text() for p in self.procs)


@contextmanager
def embedded_server(root: Path, **env: str) -> Iterator[Embedded]:
    """A started :class:`Embedded` with its files under ``root``; stopped on exit."""
    srv = Embedded(data_dir=root / "data", port=free_port(), env=dict(env))
    try:
        srv.start()
        yield srv
    finally:
        for p in reversed(srv.procs):
            p.stop()


def submit_json(
    url: str, spec: dict[str, Any], data: Any, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = {"model_spec": spec, "data": data, "options": options or {"budget": "fast"}}
    r = httpx.post(f"{url}/v1/certifications", json=body, timeout=60)
    assert r.status_code == 202, r.text
    return dict(r.json())


def get_job(url: str, job_id: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/v1/certifications/{job_id}", timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_status(
    url: str, job_id: str, statuses: Sequence[str], timeout: float, on_poll: Any = None
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = get_job(url, job_id)
        if on_poll is not None:
            on_poll(job)
        return job if job["status"] in statuses else None

    return dict(wait_until(done, timeout=timeout, interval=0.2, what=f"job {job_id} {statuses}"))


def tiny_onnx_bytes(input_dim: int = 2) -> bytes:
    """An input_dim-16-1 tanh MLP exported with the TorchScript exporter (no onnxscript)."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(input_dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    ).float()
    buf = io.BytesIO()
    torch.onnx.export(
        net,
        (torch.zeros(1, input_dim, dtype=torch.float32),),
        buf,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        opset_version=17,
    )
    return buf.getvalue()


def tiny_npz_bytes() -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, X=np.array(TINY_DATA["X"]), y=np.array(TINY_DATA["y"]))
    return buf.getvalue()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ----- PostgreSQL and Redis for the distributed tests --------------------------------------------

PG_ADMIN_URL = "postgresql://127.0.0.1:5432/test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3, user=_pg_user()):
            return True
    except Exception:
        return False


def _pg_user() -> str:
    return os.environ.get("PGUSER", "postgres")


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database for this test session (dropped afterwards); yields its URL."""
    import psycopg

    name = f"plcert_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, user=_pg_user()) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{_pg_user()}@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, user=_pg_user()) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis(REDIS_HOST, REDIS_PORT, socket_timeout=3).ping())
    except Exception:
        return False


@contextmanager
def empty_redis_db() -> Iterator[int]:
    """A Redis database number that holds no keys now; flushed (only it) afterwards.

    The queues in it also get unique names, so a run that picks the same number at the same
    moment still cannot take this run's jobs.
    """
    import redis

    numbers = list(range(1, 16))
    random.shuffle(numbers)
    token = uuid.uuid4().hex
    for n in numbers:
        client = redis.Redis(REDIS_HOST, REDIS_PORT, db=n, socket_timeout=3)
        # claim first (SET NX is atomic), then check that the claim is all there is: two test
        # processes (pytest-xdist workers) can never both take the same number
        if not client.set("plcert-e2e-claim", token, nx=True, ex=3600):
            continue
        if client.dbsize() != 1:
            client.delete("plcert-e2e-claim")
            continue
        try:
            yield n
        finally:
            client.flushdb()
        return
    raise AssertionError("no empty Redis database among 1..15")


def jobs_claimed_in(logs: str, job_id: str) -> int:
    """How many times a worker log says it claimed ``job_id``."""
    return logs.count(f"job {job_id} claimed by")


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:3000]


class RedisServer:
    """A private ``redis-server`` on a loopback port, persisting with an append-only file in
    ``folder`` (as docker-compose's Redis does), that a test can kill and start again.

    Never the machine's shared Redis: the port is a free one, the data lives in ``folder``.
    """

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder, self.port = folder, port or free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis("127.0.0.1", self.port, socket_timeout=3, socket_connect_timeout=3)

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (same port, same folder each time) and wait until it answers."""
        assert self.proc is None or not self.proc.alive(), "redis-server is already running"
        if self.proc is not None:
            self.proc.stop()
        self.starts += 1
        argv = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--dir", str(self.folder), "--protected-mode", "yes",
        ]  # fmt: skip
        self.proc = Proc(argv, base_env(), self.folder / f"redis-{self.starts}.log")
        proc = self.proc

        def answers() -> bool:
            if not proc.alive():
                raise AssertionError(f"redis-server exited:\n{proc.log_text()[-2000:]}")
            return bool(self.client().ping())

        wait_until(answers, timeout=timeout, interval=0.1, what=f"redis-server on {self.port}")

    def kill(self) -> None:
        """SIGKILL the server (no shutdown save: only what the append-only file holds survives)."""
        if self.proc is not None:
            self.proc.kill_group(signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                self.proc.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace_s=5.0)


@contextmanager
def private_redis(folder: Path) -> Iterator[RedisServer]:
    """A started :class:`RedisServer` in ``folder``; killed, and ``folder`` removed, on exit."""
    import shutil

    server = RedisServer(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
