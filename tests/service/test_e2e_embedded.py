"""End to end: `plcert serve` (API + embedded worker, SQLite + filesystem broker) as a real process.

The tests share one server (starting it costs seconds) and run in file order; the last one kills
and restarts it.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.e2e_support import (
    SLOW_DATA,
    SLOW_OPTIONS,
    SLOW_SPEC,
    TINY_DATA,
    TINY_SPEC,
    Embedded,
    embedded_server,
    get_job,
    submit_json,
    tiny_npz_bytes,
    tiny_onnx_bytes,
    wait_status,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOB_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    root = tmp_path_factory.mktemp("embedded")
    with embedded_server(root) as srv:
        yield srv


def test_json_spec_job_moves_through_stages_and_serves_both_reports(server: Embedded) -> None:
    job = submit_json(server.url, TINY_SPEC, TINY_DATA)
    assert job["status"] == "queued"
    fractions: list[float] = []
    stages: list[str] = []

    def record(j: dict[str, Any]) -> None:
        fractions.append(j["progress"]["fraction"])
        if not stages or stages[-1] != j["progress"]["stage"]:
            stages.append(j["progress"]["stage"])

    done = wait_status(server.url, job["id"], ["succeeded", "failed"], JOB_TIMEOUT_S, record)
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 1
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(0.0 < f < 1.0 for f in fractions), fractions  # progress seen while running
    assert len(stages) >= 3 and stages[-1] == "done", stages

    report = httpx.get(server.url + done["report_url"], timeout=30)
    assert report.status_code == 200
    assert report.json()["verdict"] == done["verdict"]
    assert report.json()["problem"]["n_samples"] == len(TINY_DATA["X"])
    html = httpx.get(server.url + done["report_html_url"], timeout=30)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert done["verdict"] in html.text


def test_onnx_upload_job_succeeds(server: Embedded) -> None:
    files = {
        "model": ("mlp.onnx", tiny_onnx_bytes(), "application/octet-stream"),
        "data": ("data.npz", tiny_npz_bytes(), "application/octet-stream"),
    }
    r = httpx.post(
        f"{server.url}/v1/certifications",
        files=files,
        data={"options": json.dumps({"budget": "fast"})},
        timeout=60,
    )
    assert r.status_code == 202, r.text
    assert r.headers["location"].endswith(r.json()["id"])
    done = wait_status(server.url, r.json()["id"], ["succeeded", "failed"], JOB_TIMEOUT_S)
    assert done["status"] == "succeeded", done
    report = httpx.get(server.url + done["report_url"], timeout=30).json()
    # the size-1 output bias is frozen by default (CONTRACT.md, Parameterization)
    assert report["problem"]["n_params"] == 2 * 16 + 16 + 16


def test_running_job_can_be_canceled(server: Embedded) -> None:
    job = submit_json(server.url, SLOW_SPEC, SLOW_DATA, SLOW_OPTIONS)
    wait_status(server.url, job["id"], ["running"], JOB_TIMEOUT_S)
    r = httpx.post(f"{server.url}/v1/certifications/{job['id']}/cancel", timeout=30)
    assert r.status_code == 202, r.text
    done = wait_status(server.url, job["id"], ["canceled", "succeeded", "failed"], JOB_TIMEOUT_S)
    assert done["status"] == "canceled", done
    assert done["report_url"] is None


def test_deleted_job_answers_404(server: Embedded) -> None:
    job = submit_json(server.url, TINY_SPEC, TINY_DATA)  # deleted while queued or running
    r = httpx.delete(f"{server.url}/v1/certifications/{job['id']}", timeout=30)
    assert r.status_code == 204, r.text
    assert httpx.get(f"{server.url}/v1/certifications/{job['id']}", timeout=30).status_code == 404
    gone = httpx.get(f"{server.url}/v1/certifications/{job['id']}/report", timeout=30)
    assert gone.status_code == 404


def test_job_survives_a_killed_and_restarted_server(server: Embedded) -> None:
    job = submit_json(server.url, SLOW_SPEC, SLOW_DATA, SLOW_OPTIONS)
    wait_status(server.url, job["id"], ["running"], JOB_TIMEOUT_S)
    server.proc.kill_leader(signal.SIGKILL)  # its worker dies with it; the lease re-queues the job
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/healthz", timeout=2)
    server.start()
    done = wait_status(server.url, job["id"], ["succeeded", "failed", "canceled"], 240)
    assert done["status"] == "succeeded", (done, server.logs()[-3000:])
    listed = httpx.get(f"{server.url}/v1/certifications", timeout=30).json()["items"]
    assert job["id"] in {j["id"] for j in listed}
    assert get_job(server.url, job["id"])["verdict"] == done["verdict"]


def _live(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")
def test_sigterm_to_the_serve_group_during_a_job_leaves_no_worker(server: Embedded) -> None:
    job = submit_json(server.url, SLOW_SPEC, SLOW_DATA, SLOW_OPTIONS)
    wait_status(server.url, job["id"], ["running"], JOB_TIMEOUT_S)
    workers = _descendants(server.proc.pid)
    assert len(workers) >= 2, workers  # the worker's main process and its pool child
    server.proc.kill_group(signal.SIGTERM)  # what a supervisor or Ctrl-C does
    server.proc.popen.wait(timeout=60)
    # serve waits up to 10 s for a warm shutdown, then kills the worker's whole group
    wait_until(lambda: not any(_live(p) for p in workers), timeout=30, what="the worker to be gone")
