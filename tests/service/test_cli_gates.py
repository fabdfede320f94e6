"""CI gates: `--junit`, `--min-rate`, `--max-steps` on `plcert certify` and `plcert submit --wait`.

The commands of docs/ci.md's GitHub Actions and GitLab CI examples run as written (the second
on a real `plcert serve`), on a linear model that is certified rigorously in a
second; the JUnit files are parsed with xml.etree and checked attribute by attribute.
"""

from __future__ import annotations

import io
import math
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from plcore.report.gates import certified_rate, evaluate_gates
from plcore.report.schema import Report
from service.cli import app
from tests.conftest import ROOT
from tests.service.e2e_support import Embedded

runner = CliRunner()
N_SAMPLES, DIM = 8, 20


def linear_onnx(d: int) -> bytes:
    """x -> x W^T (no bias): affine in W, so beta_F = 0 and the certificate is rigorous."""
    from onnx import TensorProto, helper, numpy_helper

    W = numpy_helper.from_array(np.random.default_rng(3).standard_normal((1, d)).astype("f4"), "W")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])],
        [W],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def write_problem(folder: Path, d: int = DIM) -> None:
    """model.onnx and data.npz as docs/ci.md names them (d < 8 is under-parameterized)."""
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    np.savez(buf, X=rng.standard_normal((N_SAMPLES, d)), y=rng.standard_normal(N_SAMPLES))
    (folder / "data.npz").write_bytes(buf.getvalue())
    (folder / "model.onnx").write_bytes(linear_onnx(d))


def read_junit(path: Path) -> tuple[ET.Element, dict[str, ET.Element]]:
    """The <testsuite> (attributes checked) and its test cases by name."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = {c.get("name", ""): c for c in suite.findall("testcase")}
    assert int(suite.get("tests", "-1")) == len(cases) >= 1
    failures = sum(c.find("failure") is not None for c in cases.values())
    errors = sum(c.find("error") is not None for c in cases.values())
    assert int(suite.get("failures", "-1")) == failures
    assert int(suite.get("errors", "-1")) == errors
    assert suite.get("skipped") == "0" and float(suite.get("time", "-1")) >= 0
    for name in ("tests", "failures", "errors", "time"):
        assert root.get(name) == suite.get(name), name
    for case in cases.values():
        assert case.get("classname") == "plcert" and float(case.get("time", "-1")) >= 0
        for bad in (case.find("failure"), case.find("error")):
            if bad is not None:
                assert bad.get("message") and bad.text == bad.get("message")
    return suite, cases


# ----- the commands of docs/ci.md -------------------------------------------------------------


def documented_commands() -> list[str]:
    """The `plcert ...` commands of the YAML examples in docs/ci.md (GitHub, then GitLab)."""
    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)]
    assert len(blocks) == 2, "docs/ci.md should have a GitHub Actions and a GitLab CI example"
    github, gitlab = blocks
    runs = [step.get("run", "") for step in github["jobs"]["plcert"]["steps"]]
    commands = [r for r in runs if r.startswith("plcert ")]
    commands += [line for line in gitlab["plcert"]["script"] if line.startswith("plcert ")]
    assert [c.split()[1] for c in commands] == ["certify", "submit"], commands
    assert gitlab["plcert"]["artifacts"]["reports"]["junit"] in commands[1]
    return commands


@pytest.mark.e2e
def test_the_documented_ci_commands_write_valid_junit(
    tmp_path: Path, plcert_server: Embedded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command runs in this process (the shell's word splitting, then the CLI), from the
    folder that holds the files, with PLCERT_URL set as the GitLab example expects."""
    write_problem(tmp_path)
    monkeypatch.chdir(tmp_path)
    for command in documented_commands():
        junit = tmp_path / "plcert-junit.xml"
        junit.unlink(missing_ok=True)
        argv = shlex.split(command)[1:]
        run = runner.invoke(app, argv, env={"PLCERT_URL": plcert_server.url})
        assert run.exit_code == 0, f"{command}\n{run.output}"
        suite, cases = read_junit(junit)
        assert list(cases) == ["certified", "rate", "steps"]
        assert suite.get("failures") == "0"
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert props["verdict"] == "certified" and props["tier"] == "rigorous"
        assert 1e-4 <= float(props["rate_decrease"] or 0) <= 1
        assert "PASS rate: certified per-step loss decrease" in run.stdout
        assert (tmp_path / "plcert-report" / "report.json").is_file()


# ----- gates and exit codes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def certified_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gates")
    write_problem(folder)
    return folder


def certify(folder: Path, *args: str) -> Any:
    argv = ["certify", str(folder / "model.onnx"), str(folder / "data.npz"), "--budget", "fast"]
    return runner.invoke(app, [*argv, "--out", str(folder / "out"), "-q", *args])


def test_failing_gates_exit_1_with_the_numbers_in_the_junit(
    certified_dir: Path, tmp_path: Path
) -> None:
    junit = tmp_path / "junit.xml"
    result = certify(
        certified_dir, "--junit", str(junit), "--min-rate", "0.999", "--max-steps", "1"
    )
    assert result.exit_code == 1, result.output
    report = Report.model_validate_json((certified_dir / "out" / "report.json").read_text())
    rate = certified_rate(report)
    assert rate is not None and rate.source == "gd" and rate.from_step == 0
    assert rate.decrease == pytest.approx(1 - report.gd.rate)  # type: ignore[operator]
    suite, cases = read_junit(junit)
    assert suite.get("failures") == "2" and cases["certified"].find("failure") is None
    rate_msg = cases["rate"].find("failure").get("message")  # type: ignore[union-attr]
    assert f"= {rate.decrease:.6g} < --min-rate 0.999" in rate_msg
    steps_msg = cases["steps"].find("failure").get("message")  # type: ignore[union-attr]
    assert f": {report.gd.iterations_to_target} > --max-steps 1" in steps_msg
    assert "FAIL rate:" in result.stdout and "FAIL steps:" in result.stdout

    # the same thresholds met exactly pass (the comparison is >= and <=)
    steps = str(report.gd.iterations_to_target)
    ok = certify(certified_dir, "--min-rate", repr(rate.decrease), "--max-steps", steps)
    assert ok.exit_code == 0, ok.output


def test_not_certified_fails_every_gate_and_a_gate_alone_sets_the_exit_code(
    tmp_path: Path,
) -> None:
    write_problem(tmp_path, d=3)  # 3 parameters, 8 equations
    plain = certify(tmp_path, "--min-rate", "1e-9")
    assert plain.exit_code == 1, plain.output
    assert "FAIL rate: no certified rate: the verdict is not_certified" in plain.stdout
    junit = tmp_path / "j" / "junit.xml"
    result = certify(tmp_path, "--junit", str(junit), "--max-steps", "10")
    assert result.exit_code == 1
    _, cases = read_junit(junit)
    certified_msg = cases["certified"].find("failure").get("message")  # type: ignore[union-attr]
    assert certified_msg.startswith("verdict not_certified (rigorous): under-parameterized")


def test_bad_gate_options_and_bad_input_exit_2_and_still_write_the_junit(tmp_path: Path) -> None:
    write_problem(tmp_path)
    for bad in ("0", "1.5", "nan"):
        result = certify(tmp_path, "--min-rate", bad)
        assert result.exit_code == 2 and "--min-rate must be in (0, 1]" in result.stderr
    assert certify(tmp_path, "--junit", str(tmp_path)).exit_code == 2
    junit = tmp_path / "junit.xml"
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    result = certify(tmp_path, "--junit", str(junit))
    assert result.exit_code == 2
    suite, cases = read_junit(junit)
    assert suite.get("errors") == "1" and list(cases) == ["certified"]
    message = cases["certified"].find("error").get("message", "")  # type: ignore[union-attr]
    assert message.startswith("the bytes are not a valid ONNX model")


def test_a_path_certificate_counts_the_steps_before_t_star(certified_dir: Path) -> None:
    report = Report.model_validate_json((certified_dir / "out" / "report.json").read_text())
    assert report.at_init is not None
    residual, q, t_star = 0.5, 0.9, 40
    path = report.path.model_copy(
        update={"certified_from_step": t_star, "rate": q, "residual_at_step": residual}
    )
    moved = report.model_copy(
        update={"at_init": report.at_init.model_copy(update={"closes": False}), "path": path}
    )
    rate = certified_rate(moved)
    eps = report.gd.target_loss
    assert rate is not None and rate.source == "path" and eps is not None
    expected = t_star + math.ceil(math.log(0.5 * residual**2 / eps) / -math.log(q))
    assert rate.steps_to_target == expected and rate.decrease == pytest.approx(0.1)
    [_, _, steps] = evaluate_gates(moved, min_rate=0.1, max_steps=expected)
    assert steps.passed and f"the first {t_star} are the checking run's" in steps.message
