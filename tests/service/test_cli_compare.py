"""`plcert compare` run locally (certify in process) and its bad inputs (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from service.cli import app as cli
from tests.service.e2e_support import TINY_DATA, TINY_SPEC

runner = CliRunner()


def _files(tmp_path: Path, widths: list[list[int]]) -> tuple[list[str], str]:
    models = []
    for i, w in enumerate(widths):
        path = tmp_path / f"model{i}.json"
        path.write_text(json.dumps({**TINY_SPEC, "widths": w}))
        models.append(str(path))
    data = tmp_path / "data.json"
    data.write_text(json.dumps(TINY_DATA))
    return models, str(data)


def test_local_compare_ranks_two_models_and_writes_both_files(tmp_path: Path) -> None:
    models, data = _files(tmp_path, [[8], [64]])
    out = tmp_path / "out"
    result = runner.invoke(cli, ["compare", *models, data, "--budget", "fast", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["status"] == "succeeded" and len(saved["ranking"]) == 2
    assert sorted(e["index"] for e in saved["ranking"]) == [0, 1]
    assert all(e["verdict"] and e["model_sha256"] for e in saved["ranking"])
    page = (out / "comparison.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "data.json" in page
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["#", "model", "verdict"] and lines[1].lstrip().startswith("1")


def test_bad_inputs_exit_2_with_one_error_line(tmp_path: Path) -> None:
    models, data = _files(tmp_path, [[8]] * 9)
    cases = [
        [models[0], data],  # one model
        [*models, data],  # nine models
        [models[0], str(tmp_path / "missing.json"), data],
        [models[0], models[1], data, "--options", "[1]"],
        [models[0], models[1], data, "--budget", "huge"],
    ]
    for args in cases:
        result = runner.invoke(cli, ["compare", *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.output
