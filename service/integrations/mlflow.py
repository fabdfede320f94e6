"""Log a plcert report to MLflow: ``pip install 'plcert[mlflow]'`` (``mlflow-skinny`` is enough).

::

    from service.integrations.mlflow import log_report

    with mlflow.start_run():
        ...                                   # train
        log_report(report)                    # into the active run

    log_report(report, run_id="...")          # into a given run (active or not)
    log_report(report)                        # no active run: a new run, ended afterwards

What is logged (names under the prefix ``plcert.``):

* metrics: every number of the constants and predictions that is defined and finite: the
  problem sizes, the quantities at w0 (``plcert.initial.lambda_min``, ...), each bracket
  (``plcert.constants.mu.estimate``, ``plcert.constants.mu.lower_bound``, ...), the GD
  prediction (``plcert.gd.step_size``, ``plcert.gd.rate``, ``plcert.gd.iterations_to_target``),
  the path certificate, the SGD predictions (``plcert.sgd.b4.rate`` for batch size 4) and the
  checking run's summary;
* tags: ``plcert.verdict``, ``plcert.tier``, ``plcert.schema_version``, ``plcert.budget``,
  ``plcert.model_sha256``, ``plcert.data_sha256``;
* artifacts: ``plcert/report.json`` and ``plcert/report.html``.

The tracking server is MLflow's own setting (``MLFLOW_TRACKING_URI`` or
``mlflow.set_tracking_uri``). MLflow 3 refuses a plain-folder ``file:`` store unless
``MLFLOW_ALLOW_FILE_STORE=true``; ``sqlite:///mlflow.db`` needs nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

from plcore.report.schema import Report

PREFIX = "plcert."
INSTALL_HINT = (
    "log_report needs MLflow, which is not installed: pip install 'plcert[mlflow]' "
    "(or pip install mlflow-skinny)"
)

_SECTIONS = ("problem", "initial", "gd", "path", "pl_eps")
_VALIDATION = ("steps", "step_size", "max_distance_from_init", "min_pl_ratio", "radius")


def report_metrics(report: Report) -> dict[str, float]:
    """The metrics :func:`log_report` logs: name -> finite value (None and inf/NaN left out)."""
    out: dict[str, float] = {}
    for name in _SECTIONS:
        section = getattr(report, name)
        if section is not None:
            out.update(_numbers(f"{PREFIX}{name}", section.model_dump()))
    out.update(_numbers(f"{PREFIX}constants", report.constants.model_dump()))
    for s in report.sgd:
        out.update(_numbers(f"{PREFIX}sgd.b{s.batch_size}", s.model_dump(exclude={"batch_size"})))
    if report.validation is not None:
        v = report.validation.model_dump(include=set(_VALIDATION))
        out.update(_numbers(f"{PREFIX}validation", v))
        if report.validation.losses:
            out.update(
                _numbers(f"{PREFIX}validation", {"final_loss": report.validation.losses[-1]})
            )
    out.update(_numbers(f"{PREFIX}provenance", {"elapsed_s": report.provenance.elapsed_s}))
    return out


def _numbers(prefix: str, values: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """Finite numbers of a (nested) dump; lists (spectra, loss curves) are not metrics."""
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            yield from _numbers(name, value)
        elif isinstance(value, int | float) and math.isfinite(value):  # bools too: 0 or 1
            yield name, float(value)


def report_tags(report: Report) -> dict[str, str]:
    """The tags :func:`log_report` sets."""
    return {
        f"{PREFIX}verdict": report.verdict,
        f"{PREFIX}tier": report.tier,
        f"{PREFIX}schema_version": report.schema_version,
        f"{PREFIX}budget": report.provenance.budget,
        f"{PREFIX}model_sha256": report.provenance.model_sha256,
        f"{PREFIX}data_sha256": report.provenance.data_sha256,
    }


def log_report(
    report: Report | Mapping[str, Any] | str | bytes,
    run_id: str | None = None,
    *,
    html: str | None = None,
) -> str:
    """Log ``report`` (a Report, its JSON dict or its JSON text) to an MLflow run; returns the
    run id. ``run_id`` None: the active run, else a new run (ended before returning).
    ``html``: the HTML report to store (default: rendered from the report).

    Raises:
        ImportError: MLflow is not installed (the message says what to install).
    """
    try:
        import mlflow
        from mlflow.entities import Metric, RunTag
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc

    if not isinstance(report, Report):
        report = (
            Report.model_validate(report)
            if isinstance(report, Mapping)
            else Report.model_validate_json(report)
        )
    if html is None:
        from plcore.report.html import render_html

        html = render_html(report)

    if run_id is None and mlflow.active_run() is None:
        with mlflow.start_run() as run:  # ended (FAILED on an exception) when the block exits
            _log(mlflow.MlflowClient(), run.info.run_id, report, html, Metric, RunTag)
            return str(run.info.run_id)
    if run_id is None:
        run_id = str(mlflow.active_run().info.run_id)  # type: ignore[union-attr]
    _log(mlflow.MlflowClient(), run_id, report, html, Metric, RunTag)
    return run_id


def _log(client: Any, run_id: str, report: Report, html: str, metric: Any, tag: Any) -> None:
    stamp = int(time.time() * 1000)
    metrics = [metric(k, v, stamp, 0) for k, v in report_metrics(report).items()]
    tags = [tag(k, v) for k, v in report_tags(report).items()]
    client.log_batch(run_id, metrics=metrics, tags=tags)
    client.log_text(run_id, report.model_dump_json(indent=2), "plcert/report.json")
    client.log_text(run_id, html, "plcert/report.html")
