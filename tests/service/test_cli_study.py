"""`plcert study width|depth`: files written, the multi-value flags, and exit 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from service.cli import app
from service.cli.study import expand_multi_values

runner = CliRunner()
QUICK = ("--mode", "quantities", "--validation-steps", "3", "--quiet")


def _write_spec(path: Path, **overrides: Any) -> Path:
    spec = {"type": "mlp", "input_dim": 4, "widths": [8], "output_dim": 1, "activation": "tanh"}
    path.write_text(json.dumps({**spec, **overrides}), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    g = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, X=g.standard_normal((6, 4)), y=g.standard_normal(6))
    return _write_spec(tmp_path / "spec.json"), data


def test_width_study_writes_json_and_html(files: tuple[Path, Path], tmp_path: Path) -> None:
    spec, data = files
    out = tmp_path / "out"
    args = ["study", "width", str(spec), str(data), "--widths", "8", "16"]
    res = runner.invoke(app, [*args, "--seeds", "0,1", "--out", str(out), *QUICK])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("hessian_norm_slope ")
    doc = json.loads((out / "study.json").read_text())
    assert set(doc["hessian_norm_slope"]) >= {"estimate", "ci_low", "ci_high"}
    assert [(r["width"], r["seed"]) for r in doc["rows"]] == [
        (w, s) for w in (8, 16) for s in (0, 1)
    ]
    assert doc["mode"] == "quantities" and doc["options"]["validation_steps"] == 3
    assert "<h2>Slope of the Hessian norm</h2>" in (out / "study.html").read_text()


def test_certify_mode_prints_a_line_per_point_and_the_smallest_certified_width(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    spec, data = files
    out = str(tmp_path / "o")
    args = ["study", "width", str(spec), str(data), "--widths", "8,16", "--out", out]
    res = runner.invoke(app, [*args, "--validation-steps", "3"])
    assert res.exit_code == 0, res.output
    assert res.output.count("width ") >= 2 and "smallest certified width:" in res.output
    rows = json.loads((tmp_path / "o" / "study.json").read_text())["rows"]
    assert all(r["verdict"] in ("certified", "not_certified", "inconclusive") for r in rows)


def test_depth_study(files: tuple[Path, Path], tmp_path: Path) -> None:
    spec, data = files
    out = tmp_path / "d"
    args = ["study", "depth", str(spec), str(data), "--depths", "1", "2", "--width", "8"]
    res = runner.invoke(app, [*args, "--out", str(out), *QUICK])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "study.json").read_text())
    assert doc["kind"] == "depth" and [r["depth"] for r in doc["rows"]] == [1, 2]


@pytest.mark.parametrize(
    ("widths", "message"),
    [
        ([], "Missing option '--widths'"),
        (["--widths", "-8"], "widths must be integers from 1 to 100000, got [-8]"),
        (["--widths", ",".join(str(w) for w in range(1, 18))], "at most 16 widths"),
        (["--widths", "8", "x16"], "Got unexpected extra argument"),
        (["--widths", "8,x"], "--widths takes integers, got 'x'"),
    ],
    ids=["empty", "negative", "too-many", "stray-token", "not-an-integer"],
)
def test_bad_widths_exit_2(
    files: tuple[Path, Path], tmp_path: Path, widths: list[str], message: str
) -> None:
    spec, data = files
    res = runner.invoke(
        app, ["study", "width", str(spec), str(data), "--out", str(tmp_path / "o"), *widths]
    )
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"widths": []}, "no width to scale"),
        (b"\x08\x07onnx-bytes", "a study needs a JSON model spec"),
        ({"widths": [8], "activation": "cube"}, "model spec invalid"),
    ],
    ids=["nothing-to-scale", "onnx", "invalid-spec"],
)
def test_bad_spec_exits_2(
    files: tuple[Path, Path], tmp_path: Path, content: Any, message: str
) -> None:
    _, data = files
    spec = tmp_path / "bad.json"
    if isinstance(content, bytes):
        spec.write_bytes(content)
    else:
        _write_spec(spec, **content)
    res = runner.invoke(
        app, ["study", "width", str(spec), str(data), "--widths", "8", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())


def test_data_that_does_not_fit_exits_2(files: tuple[Path, Path], tmp_path: Path) -> None:
    _, data = files
    spec = _write_spec(tmp_path / "wide.json", input_dim=5)
    res = runner.invoke(
        app, ["study", "width", str(spec), str(data), "--widths", "8", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "error:" in res.output


def test_expand_multi_values_stops_at_the_first_non_integer() -> None:
    args = ["--widths", "8", "16,32", "spec.json", "--seeds", "0", "1", "--out", "o"]
    assert expand_multi_values(args, ("--widths", "--seeds")) == [
        "--widths", "8", "--widths", "16,32", "spec.json",
        "--seeds", "0", "--seeds", "1", "--out", "o",
    ]  # fmt: skip
