"""`plcert submit --dry-run` and `PlcertClient.estimate`: the server's estimate, nothing queued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from service.cli import app as cli
from service.client import PlcertClient
from service.config import load_settings
from service.main import create_app
from tests.service.e2e_support import (
    TINY_DATA,
    TINY_SPEC,
    tiny_npz_bytes,
    uvicorn_in_thread,
)

runner = CliRunner()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, FastAPI]]:
    app = create_app(load_settings(data_dir=tmp_path / "data", dispatch="none"))
    with uvicorn_in_thread(app) as url:
        yield url, app


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
    assert got.budget == "standard"
    assert got.worker_memory_limit_bytes > 0
