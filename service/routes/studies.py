"""``/v1/studies``: width (and depth) studies as jobs.

``POST`` checks everything a study can fail on before any point runs (widths, seeds, the spec at
every size, the data, the size limits at the largest size), stores the data and the study with
one row per point, and sends one Celery task per point in a group (:mod:`worker.study_tasks`);
several workers share the points, and the last one to finish sends the task that assembles the
result. Tenancy as for certifications: a study is visible to its tenant only, every route is
rate limited.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from plcore.json_text import DuplicateKeyError, loads_strict
from plcore.models.spec_schema import SIZE_ONLY
from plcore.report.study_schema import StudyResult
from service.deps import ArtifactsDep, SettingsDep, StoreDep, TenantDep, rate_limit
from service.errors import ProblemException
from service.guards import check_submission
from service.routes.certifications import REPORT_HTML_HEADERS
from service.schemas import API_PREFIX, limited_responses
from service.store.studies import StudyRecord, StudyStore
from service.study_schemas import STUDY_EXAMPLE, StudyCreate, StudyJob
from service.validation import DATA_SUFFIX, check_device

log = logging.getLogger("plcert.service.api")

StudyDispatcher = Callable[[StudyRecord], None]

STUDY_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/StudyCreate"},
                "example": STUDY_EXAMPLE,
            }
        },
    }
}
"""The body is parsed strictly by hand (duplicate keys refused, as for certifications); the
schema is added to the components by :func:`service.openapi.complete`."""

router = APIRouter(
    prefix=f"{API_PREFIX}/studies", tags=["studies"], dependencies=[Depends(rate_limit)]
)


def _invalid(msg: str, type_: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": ("body",), "msg": msg, "type": type_}])


async def _read_body(request: Request) -> StudyCreate:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ProblemException(
            415,
            f"content type {ctype or '(none)'!r} is not accepted; send application/json",
            code="unsupported-media-type",
        )
    raw = await request.body()
    try:
        body = StudyCreate.model_validate_json(raw, strict=True, context={SIZE_ONLY: True})
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None
    try:
        await anyio.to_thread.run_sync(loads_strict, raw)
    except DuplicateKeyError as exc:
        raise _invalid(str(exc), "duplicate_key") from None
    return body


def _data_bytes(body: StudyCreate) -> tuple[bytes, str]:
    if isinstance(body.data, str):
        return body.data.encode("utf-8"), "named"
    raw = json.dumps({"X": body.data.X, "y": body.data.y}, separators=(",", ":"))
    return raw.encode(), "json"


def validate_study(
    body: StudyCreate, data: bytes, data_format: str, settings: SettingsDep
) -> list[tuple[int, int | None, int]]:
    """Every point's spec, the data, their fit and the size limits at the largest point; the
    points (width, depth, seed). Raises the plcore errors (422) or a size-limit problem."""
    from plcore import load_dataset
    from plcore.data import check_fits
    from plcore.models.spec import load_spec_model
    from plcore.study import plan_study
    from plcore.study.scaling import spec_at

    spec = body.model_spec.model_dump(mode="json")
    values = body.widths if body.kind == "width" else body.depths
    fixed = body.depth if body.kind == "width" else body.width
    _, _, points = plan_study(spec, body.kind, values, body.seeds, fixed)
    largest = max(points, key=lambda p: (p[0], p[1] or 0))
    big = spec_at(spec, width=largest[0], seed=largest[2], depth=largest[1])
    check_submission(json.dumps(big).encode(), "json", data, data_format, settings.size_limits)
    dataset = load_dataset(data.decode() if data_format == "named" else data, None)
    small = min(points, key=lambda p: (p[0], p[1] or 0))
    check_fits(
        load_spec_model(spec_at(spec, width=small[0], seed=small[2], depth=small[1])), dataset
    )
    return points


def enqueue_study(study: StudyRecord) -> None:
    """One Celery task per point, sent as a group to the study's queue (no-op with
    PLCERT_DISPATCH=none)."""
    from celery import group

    from service.config import get_settings
    from service.jobs_dispatch import celery_app

    settings = get_settings()
    if settings.dispatch == "none":
        return
    app = celery_app(settings)
    group(
        app.signature("plcert.run_study_point", args=(study.id, i), queue=study.queue)
        for i in range(study.n_points)
    ).apply_async()
    log.info("study %s: %d point tasks sent to %s", study.id, study.n_points, study.queue)


def _dispatcher(request: Request) -> StudyDispatcher:
    found: StudyDispatcher | None = getattr(request.app.state, "study_dispatcher", None)
    return found or enqueue_study


async def _get_or_404(store: StoreDep, study_id: str, tenant: str) -> StudyRecord:
    study = await run_in_threadpool(StudyStore(store.engine).get, study_id, tenant=tenant)
    if study is None:
        raise ProblemException(404, f"no study {study_id!r}", code="study-not-found")
    return study


async def _view(store: StoreDep, artifacts: ArtifactsDep, study: StudyRecord) -> StudyJob:
    counts = await run_in_threadpool(StudyStore(store.engine).point_counts, study.id)
    result = None
    if study.status == "succeeded" and study.result_ref:
        raw = await run_in_threadpool(artifacts.get, study.result_ref)
        result = StudyResult.model_validate_json(raw)
    return StudyJob.from_record(study, counts, result)


@router.post(
    "",
    status_code=202,
    response_model=StudyJob,
    response_model_exclude_none=False,
    summary="Submit a width (or depth) study",
    openapi_extra=STUDY_OPENAPI,
    responses=limited_responses(401, 413, 415, 422, 507),
)
async def create_study(
    request: Request,
    response: Response,
    tenant: TenantDep,
    settings: SettingsDep,
    store: StoreDep,
    artifacts: ArtifactsDep,
) -> StudyJob:
    """Certify the base spec at each width (or depth) and seed; answers 202 with the study.

    Bad widths (none, negative, more than 16), seeds, a spec with no width to scale, data that
    does not fit, or a size over ``PLCERT_MAX_*`` at the largest width are a 422 now.
    """
    parsed = await _read_body(request)
    check_device(parsed.options.device)
    data, data_format = _data_bytes(parsed)
    with anyio.fail_after(settings.validation_timeout_s):
        points = await anyio.to_thread.run_sync(
            validate_study, parsed, data, data_format, settings, abandon_on_cancel=True
        )
    data_ref = (await run_in_threadpool(artifacts.put_all, [(data, DATA_SUFFIX[data_format])]))[0]
    queue = settings.queue_gpu if parsed.options.device.startswith("cuda") else settings.queue_cpu
    values = parsed.widths if parsed.kind == "width" else parsed.depths
    study = await run_in_threadpool(
        lambda: StudyStore(store.engine).create(
            tenant=tenant,
            kind=parsed.kind,
            mode=parsed.mode,
            spec=parsed.model_spec.model_dump(mode="json"),
            values=sorted(set(values)),
            seeds=list(dict.fromkeys(s for _, _, s in points)),
            fixed=parsed.depth if parsed.kind == "width" else parsed.width,
            options=parsed.options.model_dump(mode="json"),
            data_ref=data_ref,
            data_format=data_format,
            queue=queue,
            points=points,
        )
    )
    try:
        await run_in_threadpool(_dispatcher(request), study)
    except Exception:
        log.exception("could not send study %s to the broker", study.id)
    response.headers["Location"] = f"{API_PREFIX}/studies/{study.id}"
    response.headers["Retry-After"] = "2"
    return await _view(store, artifacts, study)


@router.get(
    "/{study_id}",
    response_model=StudyJob,
    summary="Status, progress and (when done) the result of a study",
    responses=limited_responses(401, 404),
)
async def get_study(
    study_id: str, response: Response, tenant: TenantDep, store: StoreDep, artifacts: ArtifactsDep
) -> StudyJob:
    """The study; ``result`` holds the StudyResult (``hessian_norm_slope``, rows) once it
    succeeded."""
    study = await _get_or_404(store, study_id, tenant)
    if not study.is_terminal:
        response.headers["Retry-After"] = "2"
    return await _view(store, artifacts, study)


@router.get(
    "/{study_id}/report.html",
    summary="The HTML page of a finished study",
    response_class=HTMLResponse,
    responses=limited_responses(401, 404, 409),
)
async def get_study_html(
    study_id: str, tenant: TenantDep, store: StoreDep, artifacts: ArtifactsDep
) -> HTMLResponse:
    """A self-contained HTML page; 409 until the study succeeded."""
    study = await _get_or_404(store, study_id, tenant)
    if study.status != "succeeded" or study.html_ref is None:
        raise ProblemException(
            409,
            f"study {study_id} is {study.status}: the page exists once it succeeded",
            code="report-not-ready",
            extra={"job_status": study.status},
        )
    content = await run_in_threadpool(artifacts.get, study.html_ref)
    return HTMLResponse(content, headers=REPORT_HTML_HEADERS)


@router.post(
    "/{study_id}/cancel",
    status_code=202,
    response_model=StudyJob,
    summary="Cancel a study",
    responses=limited_responses(401, 404, 409),
)
async def cancel_study(
    study_id: str, tenant: TenantDep, store: StoreDep, artifacts: ArtifactsDep
) -> StudyJob:
    """Queued points are canceled at once, running ones at their next check; 409 when the
    study already finished."""
    study = await run_in_threadpool(
        StudyStore(store.engine).request_cancel, study_id, tenant=tenant
    )
    if study is None:
        raise ProblemException(404, f"no study {study_id!r}", code="study-not-found")
    return await _view(store, artifacts, study)


@router.delete(
    "/{study_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a study",
    responses=limited_responses(401, 404),
)
async def delete_study(study_id: str, tenant: TenantDep, store: StoreDep) -> Response:
    """Delete the study (running points are asked to stop); afterwards GET answers 404."""
    if not await run_in_threadpool(StudyStore(store.engine).delete, study_id, tenant=tenant):
        raise ProblemException(404, f"no study {study_id!r}", code="study-not-found")
    return Response(status_code=204)
