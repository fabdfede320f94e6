"""`plcert submit` against a live API (uvicorn in a thread; jobs run by the real worker code)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.config import load_settings
from service.main import create_app
from service.store.jobs import JobRecord
from tests.service.e2e_support import (
    TINY_DATA,
    TINY_SPEC,
    free_port,
    tiny_npz_bytes,
    tiny_onnx_bytes,
    uvicorn_in_thread,
)
from worker.tasks import run_job

runner = CliRunner()


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    settings = load_settings(data_dir=tmp_path / "data", dispatch="none")
    app = create_app(settings)
    store, artifacts = app.state.store, app.state.artifacts

    threads: list[tuple[str, threading.Thread]] = []

    def run_in_thread(job: JobRecord) -> None:
        thread = threading.Thread(
            target=run_job,
            args=(job.id,),
            kwargs={
                "worker_id": "test:0",
                "store": store,
                "artifacts": artifacts,
                "settings": settings,
            },
            daemon=True,
        )
        thread.start()
        threads.append((job.id, thread))

    app.state.dispatcher = run_in_thread
    try:
        with uvicorn_in_thread(app) as url:
            yield url
    finally:
        # No job thread may outlive the test (torch threads at interpreter exit abort it).
        for job_id, job_thread in threads:
            current = store.get_job(job_id)
            if current is not None and not current.is_terminal:
                store.request_cancel(job_id, tenant=None)
            job_thread.join(timeout=60)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "model.json"
    model.write_text(json.dumps(TINY_SPEC))
    data = tmp_path / "data.npz"
    data.write_bytes(tiny_npz_bytes())
    return model, data


def test_submit_prints_the_job_id_and_returns_at_once(
    api_url: str, files: tuple[Path, Path]
) -> None:
    model, data = files
    result = runner.invoke(cli, ["submit", str(model), str(data), "--url", api_url])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"[0-9a-f]{32}", result.stdout.strip())


def test_submit_wait_writes_both_reports_and_the_verdict(
    api_url: str, files: tuple[Path, Path], tmp_path: Path
) -> None:
    model, data = files
    out = tmp_path / "out"
    args = ["submit", str(model), str(data), "--url", api_url, "--wait", "--out", str(out)]
    result = runner.invoke(cli, [*args, "--options", '{"budget": "fast"}'])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert f"verdict: {report['verdict']}" in result.stdout
    assert "<html" in (out / "report.html").read_text().lower()


def test_fail_if_not_certified_exits_1_exactly_when_the_verdict_is_not_certified(
    api_url: str, tmp_path: Path
) -> None:
    model = tmp_path / "m.json"
    model.write_text(json.dumps(TINY_SPEC))
    data = tmp_path / "d.json"
    data.write_text(json.dumps(TINY_DATA))
    out = tmp_path / "out"
    args = ["submit", str(model), str(data), "--url", api_url, "--fail-if-not-certified"]
    result = runner.invoke(cli, [*args, "--out", str(out), "--options", '{"budget": "fast"}'])
    verdict = json.loads((out / "report.json").read_text())["verdict"]
    assert result.exit_code == (0 if verdict == "certified" else 1), result.output


def test_onnx_model_with_a_named_dataset_uploads_the_data_as_npz(
    api_url: str, tmp_path: Path
) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_onnx_bytes(input_dim=10))  # diabetes has 10 features
    result = runner.invoke(cli, ["submit", str(model), "sklearn:diabetes?n=16", "--url", api_url])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"[0-9a-f]{32}", result.stdout.strip())


def test_invalid_model_spec_exits_2_with_the_problem_detail(
    api_url: str, tmp_path: Path, files: tuple[Path, Path]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**TINY_SPEC, "input_dim": 5}))  # data has 2 columns
    result = runner.invoke(cli, ["submit", str(bad), str(files[1]), "--url", api_url])
    assert result.exit_code == 2, result.output
    assert "HTTP 422" in result.stderr


def test_invalid_options_json_exits_2_before_any_request(files: tuple[Path, Path]) -> None:
    model, data = files
    result = runner.invoke(
        cli, ["submit", str(model), str(data), "--url", "http://127.0.0.1:9", "--options", "{"]
    )
    assert result.exit_code == 2
    assert "--options is not valid JSON" in result.stderr


def test_missing_model_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["submit", str(tmp_path / "nope.onnx"), "sklearn:diabetes"])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_unreachable_server_exits_2_naming_the_url(files: tuple[Path, Path]) -> None:
    model, data = files
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(cli, ["submit", str(model), str(data), "--url", url])
    assert result.exit_code == 2
    assert f"cannot reach {url}" in result.stderr
