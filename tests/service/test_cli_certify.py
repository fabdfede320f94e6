"""`plcert certify`: reports written, exit codes, and one-line errors for bad input."""

from __future__ import annotations

import _thread
import json
import os
import re
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from plcore.report.schema import Report
from service.cli import app
from tests.conftest import require_system_tool, run_chromium

DIGITS = "sklearn:digits?n=12&target=label"
FAST = ("--budget", "fast", "--validation-steps", "20")
DIABETES = "sklearn:diabetes?n=40&standardize=true&standardize_y=true"

runner = CliRunner()


def _spec(**overrides: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "type": "mlp",
        "input_dim": 64,
        "widths": [16],
        "output_dim": 1,
        "activation": "tanh",
        "parameterization": "ntk",
        "seed": 0,
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.json"
    path.write_text(json.dumps(_spec()), encoding="utf-8")
    return path


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    """A tiny tanh MLP 64-16-1 exported by torch's TorchScript exporter."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(
        torch.float32
    )
    net.eval()
    path = tmp_path / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, on purpose
        torch.onnx.export(
            net,
            (torch.zeros(2, 64, dtype=torch.float32),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        )
    return path


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["certify", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _check_reports(out: Path) -> Report:
    report = Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "What this means" in page
    return report


# ------------------------------------------------------------------------------ bad input: 2


def _assert_one_line_error(code: int, stderr: str, pattern: str) -> None:
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_missing_model_file_exits_2_with_one_line(tmp_path: Path) -> None:
    code, _, err = _invoke(str(tmp_path / "nope.onnx"), DIGITS, "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, r"model file not found: .*nope\.onnx")
    assert not (tmp_path / "o").exists()


def test_missing_data_file_exits_2(spec_file: Path, tmp_path: Path) -> None:
    code, _, err = _invoke(str(spec_file), str(tmp_path / "d.npz"), "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, r"data file not found: .*d\.npz")


def test_malformed_onnx_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf model\xff\xff")
    code, _, err = _invoke(str(bad), DIGITS, "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, r"(?i)onnx|model|parse|protobuf")


def test_bad_spec_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_spec(widths=[-3], activation="nosuch")), encoding="utf-8")
    code, _, err = _invoke(str(bad), DIGITS, "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, r"widths|activation")


def test_spec_that_is_not_json_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "mlp", ', encoding="utf-8")
    code, _, err = _invoke(str(bad), DIGITS, "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, r"(?i)json")


def test_nan_in_data_exits_2(spec_file: Path, tmp_path: Path) -> None:
    X = np.zeros((5, 64))
    X[3, 7] = np.nan
    data = tmp_path / "nan.npz"
    np.savez(data, X=X, y=np.zeros(5))
    code, _, err = _invoke(str(spec_file), str(data), "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, r"non-finite")


def test_data_that_does_not_fit_the_model_exits_2(spec_file: Path, tmp_path: Path) -> None:
    code, _, err = _invoke(str(spec_file), DIABETES, "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, r"per-sample shape \(10,\).*\(64,\)")


def test_bad_budget_exits_2(spec_file: Path, tmp_path: Path) -> None:
    code, _, err = _invoke(
        str(spec_file), DIGITS, "--out", str(tmp_path / "o"), "--budget", "bogus"
    )
    _assert_one_line_error(code, err, r"budget.*'bogus'")


def test_out_that_is_a_file_exits_2(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "file"
    out.write_text("x", encoding="utf-8")
    code, _, err = _invoke(str(spec_file), DIGITS, "--out", str(out))
    _assert_one_line_error(code, err, r"--out must be a folder")


def test_missing_out_is_a_usage_error() -> None:
    result = runner.invoke(app, ["certify", "m.json", DIGITS])
    assert result.exit_code == 2
    assert "--out" in result.output


# ------------------------------------------------------------------------- successful runs


@pytest.mark.slow
def test_certify_json_spec_writes_both_reports(
    spec_file: Path, tmp_path: Path, artifacts_dir: Path
) -> None:
    out = tmp_path / ("long-folder-name-" * 4) / "out"  # the printed paths pass 80 columns
    code, stdout, err = _invoke(
        str(spec_file),
        DIGITS,
        "--out",
        str(out),
        *FAST,
        "--batch-size",
        "8",
        "--lr",
        "0.05",
    )
    assert code == 0, err
    report = _check_reports(out)
    assert report.problem.n_samples == 12
    assert report.problem.n_params == 64 * 16 + 16 + 16 + 1
    assert report.provenance.budget == "fast"
    assert report.validation is not None and report.validation.steps == 20
    assert [s.batch_size for s in report.sgd] == [8]
    plr = report.gd.planned_learning_rate
    if report.gd.step_size is not None:
        assert plr is not None and plr.learning_rate == 0.05 and plr.convention == "mse"
    assert report.verdict in stdout
    # printed whole, as the terminal wraps it (a hard line break would cut the path in two)
    assert f"report: {out / 'report.html'}  (JSON: {out / 'report.json'})" in stdout
    _open_in_chromium(out / "report.html", tmp_path, artifacts_dir / "cli-spec-report.png")


@pytest.mark.slow
def test_certify_onnx_model_writes_both_reports(
    onnx_file: Path, tmp_path: Path, artifacts_dir: Path
) -> None:
    out = tmp_path / "out"
    code, stdout, err = _invoke(str(onnx_file), DIGITS, "--out", str(out), *FAST)
    assert "verdict" in stdout
    assert code == 0, err
    report = _check_reports(out)
    # the size-1 output bias is frozen by default (CONTRACT.md, Parameterization)
    assert report.problem.n_params == 64 * 16 + 16 + 16
    assert [p.name for p in report.parameters if not p.trainable] == ["2.bias"]
    assert report.problem.n_constraints == 12
    _open_in_chromium(out / "report.html", tmp_path, artifacts_dir / "cli-onnx-report.png")


def _open_in_chromium(page: Path, tmp_path: Path, screenshot: Path) -> None:
    """The report the CLI wrote opens in a real browser without console errors."""
    require_system_tool("chromium", "opens the report the CLI wrote")
    url = page.resolve().as_uri()
    dom = run_chromium(
        "--enable-logging=stderr", "--v=0", "--dump-dom", url, profile=tmp_path / "c1"
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "badge verdict-" in dom.stdout
    assert "Uncaught" not in dom.stderr and "ERROR:CONSOLE" not in dom.stderr
    screenshot.unlink(missing_ok=True)
    shot = run_chromium(
        f"--screenshot={screenshot}", "--window-size=1280,3000", url, profile=tmp_path / "c2"
    )
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]


@pytest.mark.slow
def test_fail_if_not_certified_exits_1_for_an_under_parameterized_model(tmp_path: Path) -> None:
    linear = tmp_path / "linear.json"
    linear.write_text(json.dumps(_spec(input_dim=10, widths=[])), encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = _invoke(
        str(linear),
        DIABETES,
        "--out",
        str(out),
        "--budget",
        "fast",
        "--fail-if-not-certified",
        "--quiet",
    )
    assert code == 1, err
    report = _check_reports(out)
    assert report.verdict == "not_certified"
    assert report.problem.overparameterization_ratio < 1
    assert stdout.strip() == "not_certified"


@pytest.mark.slow
def test_console_script_runs_as_a_real_process(spec_file: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "plcert"
    if not script.exists():
        pytest.fail(f"console script {script} is missing: run `pip install -e .`")
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(script), "certify", str(spec_file), DIGITS, "--out", str(out), *FAST],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = _check_reports(out)
    assert report.verdict in proc.stdout
    bad = subprocess.run(
        [str(script), "certify", str(tmp_path / "missing.json"), DIGITS, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: model file not found")
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_ctrl_c_exits_130_without_writing_reports(tmp_path: Path) -> None:
    # A model big enough that the run is still going when the interrupt arrives.
    spec = tmp_path / "wide.json"
    spec.write_text(json.dumps(_spec(widths=[256, 256])), encoding="utf-8")
    out = tmp_path / "out"
    # interrupt_main does nothing where SIGINT is ignored, as for a command started with & by a
    # shell without job control (bash -c '... &'): Python's own handler, for this test only.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    try:
        result = runner.invoke(
            app, ["certify", str(spec), "sklearn:digits?n=64&target=label", "--out", str(out)]
        )
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == "error: interrupted"
    assert not (out / "report.json").exists()


@pytest.mark.parametrize(
    ("widths", "data", "pattern"),
    [
        (
            [10**6, 10**6],
            DIGITS,
            r"the model has 1,000,067,000,001 parameters, over the limit of 50,000,000 "
            r"\(PLCERT_MAX_PARAMS\)",
        ),
        (
            [16],
            "sklearn:digits?n=1000000000",
            r"N = n k = 1,000,000,000 x 10 = .*PLCERT_MAX_OUTPUTS",
        ),
    ],
)
def test_a_job_over_a_size_limit_exits_2_with_the_apis_message(
    tmp_path: Path, widths: list[int], data: str, pattern: str
) -> None:
    spec = tmp_path / "huge.json"
    spec.write_text(json.dumps(_spec(widths=widths)), encoding="utf-8")
    code, _, err = _invoke(str(spec), data, "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "o").exists()
