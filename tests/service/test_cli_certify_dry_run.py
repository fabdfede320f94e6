"""`plcert certify --dry-run`: prints the estimate (table or JSON), computes and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import plcore
from plcore import CertifyOptions, load_dataset, load_model
from plcore.estimate.cost import estimate_for
from service.cli import app

DIGITS = "sklearn:digits?n=12&target=label"
SPEC = {"type": "mlp", "input_dim": 64, "widths": [16], "output_dim": 1, "activation": "tanh"}

runner = CliRunner()


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.json"
    path.write_text(json.dumps(SPEC), encoding="utf-8")
    return path


def _no_certify(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a dry run must not certify")

    monkeypatch.setattr(plcore, "certify", refuse)


def test_dry_run_json_is_the_estimate_of_the_loaded_problem(
    spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_certify(monkeypatch)
    out = tmp_path / "out"
    r = runner.invoke(
        app,
        [
            "certify",
            str(spec_file),
            DIGITS,
            "--dry-run",
            "--json",
            "--budget",
            "fast",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    expected = estimate_for(load_model(SPEC), load_dataset(DIGITS), CertifyOptions(budget="fast"))
    assert got["peak_memory_bytes"] == expected.peak_memory_bytes
    assert got["time_s"] == pytest.approx(expected.time_s)
    assert got["size"]["n_samples"] == 12 and got["size"]["n_params"] == 64 * 16 + 16 + 16 + 1
    assert got["budget"] == "fast"
    assert not out.exists()


def test_dry_run_table_needs_no_out_folder(
    spec_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_certify(monkeypatch)
    r = runner.invoke(app, ["certify", str(spec_file), DIGITS, "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "dry run (budget standard)" in r.stdout
    assert "N = 12 outputs" in r.stdout
    for stage in ("hessian norm", "radius search", "checking run", "total"):
        assert stage in r.stdout


def test_dry_run_of_data_that_does_not_fit_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "mlp.json"
    path.write_text(json.dumps({**SPEC, "input_dim": 3}), encoding="utf-8")
    r = runner.invoke(app, ["certify", str(path), DIGITS, "--dry-run"])
    assert r.exit_code == 2
    assert "error:" in r.stderr


def test_certify_without_out_or_dry_run_is_a_usage_error(spec_file: Path) -> None:
    r = runner.invoke(app, ["certify", str(spec_file), DIGITS])
    assert r.exit_code == 2
    assert "--out DIR is required" in r.stderr
