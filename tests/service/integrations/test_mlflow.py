"""`log_report` against a real MLflow tracking store in a temporary folder (`file:` URI)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from plcore import CertifyOptions, certify
from plcore.report.schema import Report
from service.integrations.mlflow import log_report, report_metrics
from tests.plcore.certify_cases import gaussian_data, linear_spec, mlp

mlflow = pytest.importorskip("mlflow", reason="the test extra installs mlflow-skinny")


@pytest.fixture(scope="module")
def report() -> Report:
    """A rigorous certificate of a linear model (about a second)."""
    return certify(
        mlp(linear_spec(12)), gaussian_data(6, 12, seed=4), CertifyOptions(budget="fast")
    )


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this opt-in
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_log_report_without_a_run_creates_one_with_metrics_tags_and_artifacts(
    report: Report, tracking: str, tmp_path: Path
) -> None:
    run_id = log_report(report)
    assert mlflow.active_run() is None  # the run it created is ended
    client = mlflow.MlflowClient(tracking)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["plcert.verdict"] == report.verdict == "certified"
    assert tags["plcert.tier"] == report.tier == "rigorous"
    assert tags["plcert.model_sha256"] == report.provenance.model_sha256
    assert report.gd.rate is not None and report.constants.mu.lower_bound is not None
    assert metrics["plcert.gd.rate"] == report.gd.rate
    assert metrics["plcert.gd.iterations_to_target"] == report.gd.iterations_to_target
    assert metrics["plcert.constants.mu.lower_bound"] == report.constants.mu.lower_bound
    assert metrics["plcert.constants.L_F.upper_bound"] == report.constants.L_F.upper_bound
    assert metrics["plcert.initial.lambda_min"] == report.initial.lambda_min
    assert metrics["plcert.problem.n_params"] == report.problem.n_params == 12
    assert metrics == report_metrics(report)
    assert all(isinstance(v, float) for v in metrics.values())

    paths = {a.path for a in client.list_artifacts(run_id, "plcert")}
    assert paths == {"plcert/report.json", "plcert/report.html"}
    folder = Path(client.download_artifacts(run_id, "plcert", str(tmp_path / "dl")))
    assert Report.model_validate_json((folder / "report.json").read_text()) == report
    assert "certified" in (folder / "report.html").read_text()


def test_log_report_goes_into_the_given_or_the_active_run(report: Report, tracking: str) -> None:
    client = mlflow.MlflowClient(tracking)
    with mlflow.start_run() as active:
        other = client.create_run(active.info.experiment_id).info.run_id
        assert log_report(report.model_dump(mode="json"), run_id=other) == other
        assert log_report(report.model_dump_json(), html="<p>page</p>") == active.info.run_id
    assert client.get_run(other).data.tags["plcert.verdict"] == "certified"
    page = client.download_artifacts(active.info.run_id, "plcert/report.html")
    assert Path(page).read_text() == "<p>page</p>"
    stored = client.download_artifacts(other, "plcert/report.json")
    assert json.loads(Path(stored).read_text())["verdict"] == "certified"


def test_without_mlflow_log_report_says_what_to_install(
    report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'plcert\[mlflow\]'"):
        log_report(report)
