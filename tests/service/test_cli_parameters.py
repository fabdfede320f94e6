"""`plcert certify` and `plcert submit` with --trainable / --frozen (repeatable patterns)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

import service.client
from plcore.report.schema import Report
from service.cli import app

runner = CliRunner()
SPEC = {
    "type": "mlp",
    "input_dim": 64,
    "widths": [16],
    "output_dim": 1,
    "activation": "tanh",
    "parameterization": "ntk",
    "seed": 0,
}
DIGITS = "sklearn:digits?n=12&target=label"


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.json"
    path.write_text(json.dumps(SPEC), encoding="utf-8")
    return path


def test_certify_with_frozen_hidden_layer_reports_the_selection(
    spec_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["certify", str(spec_file), DIGITS, "--out", str(out), "--budget", "fast"]
    result = runner.invoke(app, [*args, "--frozen", "0.weight", "--frozen", "0.bias", "-q"])
    assert result.exit_code == 0, result.output
    report = Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    assert report.problem.n_params == 17
    assert [(p.name, p.trainable) for p in report.parameters] == [
        ("0.weight", False),
        ("0.bias", False),
        ("2.weight", True),
        ("2.bias", True),
    ]


def test_certify_with_a_pattern_that_matches_nothing_exits_2(
    spec_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["certify", str(spec_file), DIGITS, "--out", str(out), "--trainable", "head.*"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "trainable pattern 'head.*' matches no parameter" in lines[0]
    assert not (out / "report.json").exists()


def test_submit_puts_the_patterns_into_the_options(
    spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[dict[str, Any]] = []

    class FakeClient:
        def __init__(self, url: str, api_key: str | None = None) -> None:
            pass

        def submit(self, model: Path, data: str, opts: dict[str, Any], **kw: Any) -> Any:
            sent.append(opts)
            return SimpleNamespace(id="0" * 32)

        def close(self) -> None:
            pass

    monkeypatch.setattr(service.client, "PlcertClient", FakeClient)
    args = ["submit", str(spec_file), DIGITS, "--options", '{"budget": "fast"}']
    result = runner.invoke(app, [*args, "--trainable", "2.*", "--frozen", "2.bias"])
    assert result.exit_code == 0, result.output
    assert sent == [{"budget": "fast", "trainable": ["2.*"], "frozen": ["2.bias"]}]
