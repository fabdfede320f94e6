"""`plcert submit --dry-run` and `PlcertClient.estimate`: the server's estimate, nothing queued."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from service.cli import app as cli
from service.client import PlcertClient
from service.config import load_settings
from service.main import create_app
from tests.service.e2e_support import TINY_DATA, TINY_SPEC, free_port, tiny_npz_bytes

runner = CliRunner()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, FastAPI]]:
    app = create_app(load_settings(data_dir=tmp_path / "data", dispatch="none"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_submit_dry_run_prints_the_estimate_and_queues_nothing(
    served: tuple[str, FastAPI], tmp_path: Path
) -> None:
    url, _ = served
    model, data = tmp_path / "m.json", tmp_path / "d.json"
    model.write_text(json.dumps(TINY_SPEC))
    data.write_text(json.dumps(TINY_DATA))
    r = runner.invoke(cli, ["submit", str(model), str(data), "--url", url, "--dry-run"])
    assert r.exit_code == 0, r.output
    estimate = json.loads(r.stdout)
    assert estimate["fits"] is True
    assert estimate["size"]["n_samples"] == len(TINY_DATA["X"])
    assert estimate["time_s"] > 0 and estimate["peak_memory_bytes"] > 0
    assert httpx.get(f"{url}/v1/certifications").json()["items"] == []


def test_client_estimate_uploads_files_like_a_submission(
    served: tuple[str, FastAPI], tmp_path: Path
) -> None:
    url, _ = served
    model, data = tmp_path / "m.json", tmp_path / "d.npz"
    model.write_text(json.dumps(TINY_SPEC))
    data.write_bytes(tiny_npz_bytes())
    with PlcertClient(url) as client:
        got = client.estimate(model, data, {"budget": "standard"})
    assert got["budget"] == "standard"
    assert got["worker_memory_limit_bytes"] > 0
