"""End to end: the broker (Redis) is killed with SIGKILL and restarted while jobs are in flight.

The API (uvicorn) and one ``plcert worker`` run on a PRIVATE ``redis-server`` (a free loopback
port, append-only file with ``appendfsync always`` in a temporary folder, as docker-compose's
Redis persists) and a fresh PostgreSQL database. The machine's shared Redis is never touched.

What must hold (issue: "job records and reports survive restarts of the broker"):

- a job RUNNING when Redis dies finishes, exactly once (attempt 1, one claim in the worker log),
  and its JSON and HTML reports are served;
- a job QUEUED (its message in Redis, not yet taken) when Redis dies is not lost: the append-only
  file keeps its message, and it runs once Redis is back;
- a job SUBMITTED WHILE REDIS IS DOWN is accepted (202: the job is stored before it is sent,
  and a failed send is logged, not answered with 500), then dispatched by the worker's janitor
  (``PLCERT_QUEUED_ORPHAN_AFTER_S``) once Redis is back; it runs exactly once;
- the API and the worker reconnect by themselves: a job submitted after the restart is sent at
  once (no send failure in the API log) and runs.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_system_tool
from tests.service.e2e_support import (
    PLCERT,
    TINY_DATA,
    TINY_SPEC,
    Proc,
    RedisServer,
    base_env,
    free_port,
    fresh_postgres_database,
    get_job,
    jobs_claimed_in,
    postgres_available,
    private_redis,
    processes,
    submit_json,
    unique_name,
    wait_ready,
    wait_status,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LEASE_S = 4.0
"""Short lease: the janitor sweeps every LEASE_S / 2 seconds."""
QUEUED_ORPHAN_AFTER_S = 8.0
"""A queued job never claimed for this long is re-sent by the janitor."""
REDIS_DOWN_S = 2.0
FINAL = ["succeeded", "failed", "canceled"]
# The tiny MLP with budget "fast" and a long checking GD run, so that it is still running when
# Redis is back and the queue is read: about 3 s of set-up plus 0.5 ms (quiet) to 1.6 ms (loaded)
# per step. 5,000 steps were too few on a quiet machine: the job ended and the worker took the
# queued one before the check.
LONG_OPTIONS: dict[str, Any] = {"budget": "fast", "validation_steps": 15_000}


def _require_postgres() -> None:
    if not postgres_available():
        import os

        message = "PostgreSQL not reachable on 127.0.0.1:5432 (.ci/run starts it)"
        if os.environ.get("PLCERT_REQUIRE_SYSTEM_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Stack:
    url: str
    api: Proc
    worker: Proc
    redis: RedisServer
    queue: str


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    require_system_tool("redis-server", "the broker-restart test runs a private Redis")
    _require_postgres()
    queue = unique_name("cpu")
    with (
        private_redis(tmp_path / "redis") as redis,
        fresh_postgres_database() as db_url,
        processes() as procs,
    ):
        env = base_env(
            PLCERT_DATABASE_URL=db_url,
            PLCERT_BROKER_URL=redis.url,
            PLCERT_DATA_DIR=str(tmp_path / "shared"),
            PLCERT_QUEUE_CPU=queue,
            PLCERT_QUEUE_GPU=unique_name("gpu"),
            PLCERT_LEASE_S=str(LEASE_S),
            PLCERT_QUEUED_ORPHAN_AFTER_S=str(QUEUED_ORPHAN_AFTER_S),
        )
        port = free_port()
        api_argv = [
            sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        api = Proc(api_argv, env, tmp_path / "api.log")
        procs.append(api)
        worker = Proc([*PLCERT, "worker", "--concurrency", "1"], env, tmp_path / "worker.log")
        procs.append(worker)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, api, timeout=60)
        wait_until(
            lambda: re.search(r"plcert-\w+@\S+ ready", worker.log_text()),
            timeout=60,
            what="the worker log to say ready",
        )
        yield Stack(url=url, api=api, worker=worker, redis=redis, queue=queue)


def _messages_in_redis(redis: RedisServer, queue: str) -> str:
    """Every task message Redis holds for ``queue``: waiting in the list, or delivered and not
    yet acknowledged (kombu's ``unacked`` hash)."""
    client = redis.client()
    waiting = [m.decode() for m in client.lrange(queue, 0, -1)]
    unacked = [m.decode() for m in client.hvals("unacked")]
    return "\n".join(waiting + unacked)


def _reports_served(url: str, job: dict[str, Any]) -> None:
    report = httpx.get(f"{url}{job['report_url']}", timeout=30)
    assert report.status_code == 200, report.text
    assert report.json()["verdict"] == job["verdict"]
    html = httpx.get(f"{url}{job['report_html_url']}", timeout=30)
    assert html.status_code == 200, html.text[:500]
    assert html.headers["content-type"].startswith("text/html")
    assert "<html" in html.text.lower()


def test_jobs_survive_a_redis_kill_and_restart(stack: Stack) -> None:
    url, redis = stack.url, stack.redis
    # (1) a long job, running; (5) a job queued behind it (one worker, concurrency 1, prefetch 1)
    running = submit_json(url, TINY_SPEC, TINY_DATA, LONG_OPTIONS)
    wait_status(url, running["id"], ["running"], 60)
    queued = submit_json(url, TINY_SPEC, TINY_DATA)
    assert get_job(url, queued["id"])["status"] == "queued"

    # (2) Redis dies while the job runs
    redis.kill()
    down_at = time.monotonic()

    # (4) a job submitted while Redis is down is stored and accepted; the failed send is logged
    started = time.monotonic()
    while_down = submit_json(url, TINY_SPEC, TINY_DATA)
    assert time.monotonic() - started < 20, "submitting with the broker down took too long"
    assert while_down["status"] == "queued"
    wait_until(
        lambda: f"could not send job {while_down['id']} to the broker" in stack.api.log_text(),
        timeout=10,
        what="the API log to report the failed send",
    )
    assert get_job(url, running["id"])["status"] == "running", "the job stopped with the broker"

    time.sleep(max(0.0, REDIS_DOWN_S - (time.monotonic() - down_at)))
    redis.start()
    restarted_at = datetime.now(UTC)
    assert get_job(url, running["id"])["status"] == "running", (
        "the long job ended before Redis was back: raise LONG_OPTIONS' validation_steps"
    )
    # (5) the queued job's message came back with Redis (append-only file), not via the janitor
    held = _messages_in_redis(redis, stack.queue)
    assert queued["id"] in held, f"queued job's message lost by the restart: {held[:2000]}"
    assert while_down["id"] not in held
    resent = f"job {queued['id']} queued for over" in stack.worker.log_text()
    assert not resent, "the janitor re-sent the queued job before the check: raise the interval"

    # A job submitted after the restart is sent at once: the API reconnected by itself.
    after = submit_json(url, TINY_SPEC, TINY_DATA)

    # (3) the running job finished exactly once, and its reports are served
    jobs = {
        "running": running,
        "queued": queued,
        "submitted while down": while_down,
        "submitted after": after,
    }
    done = {name: wait_status(url, job["id"], FINAL, 90) for name, job in jobs.items()}
    logs = stack.worker.log_text()
    for name, job in done.items():
        assert job["status"] == "succeeded", (name, job, logs[-3000:])
        assert job["attempt"] == 1, (name, job)
        assert jobs_claimed_in(logs, job["id"]) == 1, (name, logs[-3000:])
        _reports_served(url, job)
    # The long job ran through the outage: it finished after Redis came back, in attempt 1.
    finished = datetime.fromisoformat(done["running"]["finished_at"].replace("Z", "+00:00"))
    assert finished > restarted_at, (done["running"], restarted_at)
    assert stack.worker.alive(), logs[-3000:]
    api_log = stack.api.log_text()
    assert f"could not send job {after['id']}" not in api_log
    assert f"could not send job {queued['id']}" not in api_log
    # /readyz may answer 503 before the worker is up; no job request was ever answered 5xx.
    assert not re.search(r'"\w+ /v1/\S* HTTP/[\d.]+" 5\d\d', api_log), api_log[-3000:]
    # The job submitted while Redis was down reached the worker through the janitor.
    assert f"job {while_down['id']} queued for over" in logs, logs[-3000:]
