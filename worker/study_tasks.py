"""Width-study tasks: one Celery task per point (a group), then one task that assembles.

::

    POST /v1/studies -> group(run_study_point(id, 0), ..., run_study_point(id, n - 1))
    run_study_point:  claim the point (CAS) -> plcore.study.study_point -> row into the store
                      -> when no point is queued or running: send finish_study(id)
    finish_study:     claim_finish (CAS: exactly one assembles) -> plcore.study.assemble_study
                      -> study.json + study.html into the artifact store -> succeeded
                      (failed when a point failed, canceled when a cancel was asked)

The Celery app has no result backend, so there is no chord: the last point to finish sends the
final task, and the store's compare-and-set makes a duplicate harmless. The task functions are
thin adapters around :func:`run_point` and :func:`finish_study`, which tests call directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from plcore.errors import Cancelled
from service.config import Settings
from service.store.artifacts import ArtifactStore
from service.store.studies import StudyRecord, StudyStore
from worker.celery_app import app
from worker.errors import job_error, time_limit_error

log = logging.getLogger("plcert.worker.study")

POINT_TASK = "plcert.run_study_point"
FINISH_TASK = "plcert.finish_study"
CANCEL_POLL_S = 0.5


def load_study_data(study: StudyRecord, artifacts: ArtifactStore) -> Any:
    """The study's dataset from its artifact (inline JSON, a file format, or a name)."""
    from plcore import load_dataset

    raw = artifacts.get(study.data_ref)
    if study.data_format == "named":
        return load_dataset(raw.decode("utf-8"))
    return load_dataset(raw, format=study.data_format)  # type: ignore[arg-type]


def _cancel_check(studies: StudyStore, study_id: str) -> Callable[[], bool]:
    last = [0.0, False]

    def should_cancel() -> bool:
        now = time.monotonic()
        if now - float(last[0]) >= CANCEL_POLL_S:
            last[0], last[1] = now, studies.cancel_requested(study_id)
        return bool(last[1])

    return should_cancel


def run_point(
    study_id: str,
    idx: int,
    *,
    worker_id: str,
    studies: StudyStore,
    artifacts: ArtifactStore,
    settings: Settings,
    send_finish: Callable[[StudyRecord], object],
) -> str | None:
    """Compute point ``idx`` of the study; the status written, or None if not claimable."""
    from plcore import CertifyOptions
    from plcore.study import study_point

    claimed = studies.claim_point(
        study_id, idx, worker_id=worker_id, stale_after_s=settings.job_hard_time_limit_s
    )
    if claimed is None:
        log.info("study %s point %d not claimable: delivery acknowledged", study_id, idx)
        return None
    study, point = claimed
    fields: dict[str, Any] = {}
    try:
        row = study_point(
            study.spec,
            load_study_data(study, artifacts),
            width=point.width,
            seed=point.seed,
            depth=point.depth,
            options=CertifyOptions(**study.options),
            mode=study.mode,  # type: ignore[arg-type]
            should_cancel=_cancel_check(studies, study_id),
        )
        status, fields = "succeeded", {"row": row.model_dump(mode="json")}
    except SoftTimeLimitExceeded:
        status, fields = "failed", {"error": time_limit_error(settings.job_time_limit_s)}
    except Cancelled:
        status = "canceled"
    except Exception as exc:
        status, fields = "failed", {"error": job_error(exc)}
        log.info("study %s point %d failed: %s", study_id, idx, exc)
    if not studies.finish_point(study_id, idx, attempt=point.attempt, status=status, **fields):
        log.warning("study %s point %d: result dropped (re-claimed)", study_id, idx)
        return None
    log.info("study %s point %d (width %d) %s", study_id, idx, point.width, status)
    counts = studies.point_counts(study_id)
    if counts["queued"] + counts["running"] == 0:
        send_finish(study)
    return status


def finish_study(study_id: str, *, studies: StudyStore, artifacts: ArtifactStore) -> str | None:
    """Assemble the study from its points (exactly one caller gets past the claim)."""
    from plcore import CertifyOptions
    from plcore.report.study_html import render_study_html
    from plcore.report.study_schema import StudyRow
    from plcore.study import assemble_study

    if not studies.claim_finish(study_id):
        return None
    study = studies.get(study_id)
    if study is None:  # deleted meanwhile
        studies.finish(study_id, status="canceled")
        return "canceled"
    points = studies.points(study_id)
    failed = [p for p in points if p.status == "failed"]
    if study.cancel_requested or any(p.status == "canceled" for p in points):
        studies.finish(study_id, status="canceled")
        return "canceled"
    if failed:
        p = failed[0]
        error = dict(p.error or {})
        error["detail"] = f"point {p.idx} (width {p.width}, seed {p.seed}): {error.get('detail')}"
        studies.finish(study_id, status="failed", error=error)
        return "failed"
    try:
        result = assemble_study(
            study.spec,
            load_study_data(study, artifacts),
            study.kind,  # type: ignore[arg-type]
            study.mode,  # type: ignore[arg-type]
            study.values,
            study.seeds,
            study.fixed,
            CertifyOptions(**study.options),
            [StudyRow.model_validate(p.row) for p in points],
        )
        result_ref, html_ref = artifacts.put_all(
            [
                (result.model_dump_json(indent=2).encode("utf-8"), ".json"),
                (render_study_html(result).encode("utf-8"), ".html"),
            ]
        )
    except Exception as exc:
        log.exception("study %s: assembling failed", study_id)
        studies.finish(study_id, status="failed", error=job_error(exc))
        return "failed"
    studies.finish(study_id, status="succeeded", result_ref=result_ref, html_ref=html_ref)
    log.info("study %s succeeded (%d points)", study_id, len(points))
    return "succeeded"


def _stores() -> tuple[StudyStore, ArtifactStore, Settings]:
    from worker.tasks import runtime

    rt = runtime()
    return StudyStore(rt.store.engine), rt.artifacts, rt.settings


@app.task(name=POINT_TASK, bind=True, ignore_result=True)
def run_study_point(self: Task, study_id: str, idx: int) -> str | None:
    """Celery entry point of one point (see :func:`run_point`)."""
    from worker.tasks import worker_id_for

    studies, artifacts, settings = _stores()
    return run_point(
        study_id,
        idx,
        worker_id=worker_id_for(self.request.hostname),
        studies=studies,
        artifacts=artifacts,
        settings=settings,
        send_finish=lambda s: app.send_task(FINISH_TASK, args=[s.id], queue=s.queue),
    )


@app.task(name=FINISH_TASK, ignore_result=True)
def run_finish_study(study_id: str) -> str | None:
    """Celery entry point of the final step (see :func:`finish_study`)."""
    studies, artifacts, _ = _stores()
    return finish_study(study_id, studies=studies, artifacts=artifacts)
