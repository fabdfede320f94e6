"""Load test (issue 10, item 7): many concurrent clients against a real server on loopback.

Run ``make loadtest`` or ``python -m bench.loadtest [--modes embedded distributed]
[--clients 50] [--duration 60] [--no-write]``. For each mode:

- ``embedded``: ``plcert serve`` (SQLite job store, ``filesystem://`` broker, one embedded
  worker) in a fresh temporary ``PLCERT_DATA_DIR``;
- ``distributed``: the API (uvicorn, one process) and two ``plcert worker --concurrency 1`` on
  Redis and PostgreSQL (127.0.0.1; a fresh database, an empty Redis database and unique queue
  names, all removed afterwards), as in docker-compose.yml.

Every other ``PLCERT_*`` variable is removed from the servers' environment. The rate limit is
raised to ``--rate-limit`` requests per minute (default 10^7, far above what the clients send):
with the default ``PLCERT_RATE_LIMIT`` of 6000 a minute per tenant, 50 clients sharing one
tenant would see 429s, which is that limit working, not the service failing.

Two warm-up jobs are run to the end first, so that reports can be fetched from the first
second. Then ``--clients`` asyncio clients (one ``httpx.AsyncClient``, no think time: a closed
loop at saturation) each repeat for ``--duration`` seconds a random step: submit a tiny JSON job
(10 %), poll one of its own jobs (50 %), list the newest 20 jobs (20 %), fetch the JSON report
of a finished job (20 %). A poll that sees ``succeeded`` adds the job to the reports pool.

Per route it counts the statuses and the p50 / p99 / max latency, prints a table and writes it
into docs/reliability.md between the markers ``<!-- loadtest:MODE -->`` and
``<!-- /loadtest:MODE -->`` (a rerun replaces it; ``--no-write`` leaves the file alone). The
exit status is 1 when any answer was a 5xx or a request failed without an answer.

This is not part of ``make test`` (it runs for minutes and loads every core) nor of
``make bench`` (its name does not end in ``_bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
PLCERT = [sys.executable, "-c", "from service.cli import main; main()"]
READY_TIMEOUT_S = 180.0
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

ROUTES = {
    "submit": "POST /v1/certifications",
    "poll": "GET /v1/certifications/{id}",
    "list": "GET /v1/certifications",
    "report": "GET /v1/certifications/{id}/report",
}
STEPS: tuple[tuple[str, float], ...] = (
    ("submit", 0.10),
    ("poll", 0.50),
    ("list", 0.20),
    ("report", 0.20),
)
"""The clients' mix of steps and their probabilities."""


def tiny_job(rng: random.Random) -> dict[str, Any]:
    """A tiny JSON submission: tanh MLP 2 -> 16 -> 1 on 8 random points, budget 'fast'."""
    X = [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(8)]
    y = [rng.uniform(-1, 1) for _ in range(8)]
    spec = {"type": "mlp", "input_dim": 2, "widths": [16], "output_dim": 1, "activation": "tanh"}
    return {
        "model_spec": {**spec, "seed": 0},
        "data": {"X": X, "y": y},
        "options": {"budget": "fast"},
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the ceil(q/100 * n)-th smallest value (q in (0, 100])."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# ----- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLCERT_")}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
        PLCERT_LOG_JSON="false",
    )
    env.update(extra)
    return env


@dataclass
class Servers:
    """Processes started in their own process groups, logging into ``folder``."""

    folder: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}\n{self.logs()}")

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-tail:]}"
            for p in sorted(self.folder.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def wait_ready(url: str, servers: Servers) -> float:
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        servers.check_alive()
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"{url}/readyz not 200 within {READY_TIMEOUT_S:g} s\n{servers.logs()}")


@contextmanager
def embedded(folder: Path, rate_limit: int) -> Iterator[tuple[str, str]]:
    """``plcert serve`` on a free port; yields (url, description)."""
    port = free_port()
    servers = Servers(folder)
    env = child_env(PLCERT_DATA_DIR=str(folder / "data"), PLCERT_RATE_LIMIT=str(rate_limit))
    argv = [*PLCERT, "serve", "--port", str(port), "--log-level", "WARNING"]
    try:
        servers.start(argv, env, "serve")
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, servers)
        yield url, "`plcert serve`: SQLite, filesystem:// broker, 1 embedded worker (prefork, 1)"
    finally:
        servers.stop()


@contextmanager
def _postgres_database() -> Iterator[str]:
    import psycopg

    name = f"plcert_load_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _redis_database() -> Iterator[int]:
    import redis

    for n in random.sample(range(1, 16), 15):
        client = redis.Redis(REDIS_HOST, REDIS_PORT, db=n, socket_timeout=3)
        if client.dbsize() == 0:
            client.set("plcert-loadtest-claim", "1", ex=3600)
            try:
                yield n
            finally:
                client.flushdb()
            return
    raise RuntimeError("no empty Redis database among 1..15")


@contextmanager
def distributed(folder: Path, rate_limit: int) -> Iterator[tuple[str, str]]:
    """The API (uvicorn) and two workers on Redis + PostgreSQL; yields (url, description)."""
    port = free_port()
    servers = Servers(folder)
    with _postgres_database() as db_url, _redis_database() as redis_db:
        tag = uuid.uuid4().hex[:8]
        env = child_env(
            PLCERT_DATABASE_URL=db_url,
            PLCERT_BROKER_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
            PLCERT_DATA_DIR=str(folder / "shared"),
            PLCERT_QUEUE_CPU=f"cpu-load-{tag}",
            PLCERT_QUEUE_GPU=f"gpu-load-{tag}",
            PLCERT_RATE_LIMIT=str(rate_limit),
        )
        api = [
            sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--no-access-log",
        ]  # fmt: skip
        try:
            servers.start(api, env, "api")
            for i in range(2):
                argv = [*PLCERT, "worker", "--concurrency", "1", "--log-level", "WARNING"]
                servers.start(argv, env, f"worker-{i}")
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, servers)
            yield (
                url,
                "API (uvicorn, 1 process) + 2 `plcert worker --concurrency 1`, "
                "Redis + PostgreSQL on loopback",
            )
        finally:
            servers.stop()


# ----- the clients -------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ROUTES})
    statuses: dict[str, Counter[str]] = field(
        default_factory=lambda: {r: Counter() for r in ROUTES}
    )
    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def record(self, route: str, status: str, elapsed_s: float) -> None:
        self.latencies_ms[route].append(1000.0 * elapsed_s)
        self.statuses[route][status] += 1


async def _request(
    client: httpx.AsyncClient, tally: Tally, route: str, method: str, path: str, **kw: Any
) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        r = await client.request(method, path, **kw)
    except httpx.HTTPError as exc:
        tally.record(route, type(exc).__name__, time.perf_counter() - started)
        if len(tally.errors) < 20:
            tally.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
        return None
    tally.record(route, str(r.status_code), time.perf_counter() - started)
    if r.status_code >= 500 and len(tally.errors) < 20:
        tally.errors.append(f"{method} {path}: {r.status_code} {r.text[:300]}")
    return r


async def _client(
    client: httpx.AsyncClient, tally: Tally, deadline: float, rng: random.Random
) -> None:
    mine: list[str] = []
    names = [name for name, _ in STEPS]
    weights = [weight for _, weight in STEPS]
    while time.monotonic() < deadline:
        step = rng.choices(names, weights)[0]
        if step == "submit" or not mine:
            r = await _request(
                client, tally, "submit", "POST", "/v1/certifications", json=tiny_job(rng)
            )
            if r is not None and r.status_code == 202:
                mine.append(str(r.json()["id"]))
        elif step == "poll" or (step == "report" and not tally.done):
            job_id = rng.choice(mine[-5:])
            r = await _request(client, tally, "poll", "GET", f"/v1/certifications/{job_id}")
            succeeded = r is not None and r.status_code == 200 and r.json()["status"] == "succeeded"
            if succeeded and job_id not in tally.done:
                tally.done.append(job_id)
        elif step == "list":
            await _request(client, tally, "list", "GET", "/v1/certifications", params={"limit": 20})
        else:
            job_id = rng.choice(tally.done)
            await _request(client, tally, "report", "GET", f"/v1/certifications/{job_id}/report")


async def _warm_up(url: str, tally: Tally, timeout_s: float = 180.0) -> None:
    """Two jobs run to the end, so that reports can be fetched from the first second."""
    rng = random.Random(1)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        ids = []
        for _ in range(2):
            r = await client.post("/v1/certifications", json=tiny_job(rng))
            r.raise_for_status()
            ids.append(str(r.json()["id"]))
        deadline = time.monotonic() + timeout_s
        while ids and time.monotonic() < deadline:
            for job_id in list(ids):
                job = (await client.get(f"/v1/certifications/{job_id}")).json()
                if job["status"] == "succeeded":
                    ids.remove(job_id)
                    tally.done.append(job_id)
                elif job["status"] in ("failed", "canceled"):
                    raise RuntimeError(f"warm-up job {job_id} ended {job['status']}: {job}")
            await asyncio.sleep(0.5)
        if ids:
            raise RuntimeError(f"warm-up jobs not finished within {timeout_s:g} s: {ids}")


async def _load(url: str, clients: int, duration_s: float, seed: int) -> tuple[Tally, float]:
    tally = Tally()
    await _warm_up(url, tally)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        started = time.monotonic()
        deadline = started + duration_s
        await asyncio.gather(
            *(_client(client, tally, deadline, random.Random(seed + i)) for i in range(clients))
        )
        elapsed = time.monotonic() - started
    return tally, elapsed


# ----- report ------------------------------------------------------------------------------------


def machine() -> str:
    model = ""
    with suppress(OSError):
        m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = m.group(1).strip() if m else ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = model or platform.processor() or "unknown CPU"
    return f"{cores} cores ({cpu}), Python {platform.python_version()}"


def table(mode: str, what: str, tally: Tally, elapsed: float, clients: int, rate_limit: int) -> str:
    total = sum(len(v) for v in tally.latencies_ms.values())
    server_errors = _server_errors(tally)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"**{mode}** — {what}; {clients} clients, {elapsed:.0f} s, {total} requests "
        f"({total / elapsed:.0f}/s), {len(tally.done)} reports available at the end; "
        f"PLCERT_RATE_LIMIT={rate_limit}; {machine()}; {when}.",
        "",
        "| route | requests | statuses | p50 ms | p99 ms | max ms |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for route, name in ROUTES.items():
        values = tally.latencies_ms[route]
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses[route].items()))
        if values:
            p50, p99, top = percentile(values, 50), percentile(values, 99), max(values)
            lines.append(
                f"| `{name}` | {len(values)} | {statuses} | {p50:.0f} | {p99:.0f} | {top:.0f} |"
            )
        else:
            lines.append(f"| `{name}` | 0 | - | - | - | - |")
    lines += ["", f"5xx answers and failed requests: {server_errors}."]
    return "\n".join(lines)


def _server_errors(tally: Tally) -> int:
    return sum(
        n
        for counts in tally.statuses.values()
        for status, n in counts.items()
        if not status.isdigit() or status.startswith("5")
    )


def write_section(doc: Path, mode: str, text: str) -> None:
    """Replace the text between this mode's markers in ``doc`` (appended when missing)."""
    start, end = f"<!-- loadtest:{mode} -->", f"<!-- /loadtest:{mode} -->"
    body = doc.read_text() if doc.exists() else "# Reliability\n"
    block = f"{start}\n{text}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    body = (
        pattern.sub(lambda _: block, body)
        if pattern.search(body)
        else f"{body.rstrip()}\n\n{block}\n"
    )
    doc.write_text(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["embedded", "distributed"],
        default=["embedded", "distributed"],
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per mode")
    parser.add_argument(
        "--rate-limit", type=int, default=10_000_000, help="PLCERT_RATE_LIMIT of the servers"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--no-write", action="store_true", help="print only; leave the doc alone")
    args = parser.parse_args(argv)
    failed = False
    for mode in args.modes:
        folder = Path(tempfile.mkdtemp(prefix=f"plcert-load-{mode}-"))
        target = embedded if mode == "embedded" else distributed
        print(f"== {mode}: starting the servers", flush=True)
        try:
            with target(folder, args.rate_limit) as (url, what):
                print(
                    f"== {mode}: {args.clients} clients for {args.duration:g} s on {url}",
                    flush=True,
                )
                tally, elapsed = asyncio.run(_load(url, args.clients, args.duration, args.seed))
                text = table(mode, what, tally, elapsed, args.clients, args.rate_limit)
        except Exception:
            print(Servers(folder).logs(), file=sys.stderr)
            raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(text, flush=True)
        for line in tally.errors:
            print(f"  error: {line}", file=sys.stderr)
        if _server_errors(tally):
            failed = True
        if not args.no_write:
            write_section(args.doc, mode, text)
            print(f"written to {args.doc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
