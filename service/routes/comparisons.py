"""``/v1/comparisons``: rank several models on one dataset by certified convergence.

``POST`` checks every model as a submission would be (sizes, loading, memory), stores one
certification job per model and sends them as one Celery group; ``GET`` shows the members and,
once every one ended, the ranking; ``GET .../report.html`` the ranking table and a plot of the
predicted loss curves. Another tenant's comparison answers 404, like an unknown one.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from plcore.errors import PlcertError
from plcore.report.compare_html import render_comparison_html
from service.comparisons import comparison_view, read_comparison, store_comparison
from service.deps import (
    ArtifactsDep,
    SettingsDep,
    StoreDep,
    TenantDep,
    check_tenant_quota,
    rate_limit,
)
from service.errors import ProblemException, status_for
from service.routes.certifications import (
    REPORT_HTML_HEADERS,
    refuse_if_over_memory,
    validate_and_estimate,
)
from service.schemas import API_PREFIX, Comparison, limited_responses

log = logging.getLogger("plcert.service.api")

router = APIRouter(
    prefix=f"{API_PREFIX}/comparisons", tags=["comparisons"], dependencies=[Depends(rate_limit)]
)

COMPARE_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ComparisonCreateJSON"},
                "example": {
                    "model_specs": [
                        {"type": "mlp", "input_dim": 2, "widths": [16], "output_dim": 1},
                        {"type": "mlp", "input_dim": 2, "widths": [64], "output_dim": 1},
                    ],
                    "data": {
                        "X": [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, -1.0]],
                        "y": [0.0, 1.0, 0.5, -0.5],
                    },
                    "options": {"budget": "fast"},
                },
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model", "data"],
                    "properties": {
                        "model": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 2,
                            "maxItems": 8,
                            "description": "2 to 8 model files (.onnx or .json spec)",
                        },
                        "data": {"type": "string", "format": "binary"},
                        "options": {"$ref": "#/components/schemas/CertifyOptions"},
                    },
                },
                "encoding": {"options": {"contentType": "application/json"}},
            },
        },
    }
}


def _not_found(comparison_id: str) -> ProblemException:
    return ProblemException(404, f"no comparison {comparison_id!r}", code="comparison-not-found")


@router.post(
    "",
    status_code=202,
    response_model=Comparison,
    summary="Compare several models on one dataset",
    openapi_extra=COMPARE_OPENAPI,
    responses=limited_responses(401, 413, 415, 422, 507),
)
async def create_comparison(
    request: Request,
    response: Response,
    tenant: TenantDep,
    settings: SettingsDep,
    store: StoreDep,
    artifacts: ArtifactsDep,
) -> Comparison:
    """One certification job per model (2 to 8; JSON ``model_specs`` or repeated multipart
    ``model`` files) on the same data and options, run as a group; each model is checked at
    once like a submission (422 names the model). Answers 202 with the comparison."""
    subs, names, data_name = await read_comparison(request)
    await run_in_threadpool(check_tenant_quota, settings, store, tenant)
    for i, (sub, name) in enumerate(zip(subs, names, strict=True)):
        try:
            estimate = await validate_and_estimate(
                sub, settings.validation_timeout_s, limits=settings.size_limits
            )
        except PlcertError as exc:
            raise ProblemException(
                status_for(exc), f"model {i} ({name}): {exc}", code=exc.code
            ) from None
        refuse_if_over_memory(estimate, settings.worker_memory_limit)
    queue = settings.queue_gpu if subs[0].options.device.startswith("cuda") else settings.queue_cpu
    record, jobs = await run_in_threadpool(
        store_comparison,
        subs,
        names,
        data_name,
        tenant=tenant,
        queue=queue,
        store=store,
        artifacts=artifacts,
    )
    try:
        await run_in_threadpool(request.app.state.group_dispatcher, jobs)
    except Exception:
        # The jobs are stored and queued; the janitor re-sends queued jobs nobody claimed.
        log.exception("could not send the jobs of comparison %s", record.id)
    response.headers["Location"] = f"{API_PREFIX}/comparisons/{record.id}"
    response.headers["Retry-After"] = "5"
    view, _ = await run_in_threadpool(comparison_view, record, store, artifacts)
    return view


@router.get(
    "/{comparison_id}",
    response_model=Comparison,
    summary="Status and ranking of a comparison",
    responses=limited_responses(401, 404),
)
async def get_comparison(
    comparison_id: str, response: Response, tenant: TenantDep, store: StoreDep,
    artifacts: ArtifactsDep,
) -> Comparison:  # fmt: skip
    """The members' jobs and, once every one ended, ``ranking`` (best first)."""
    record = await run_in_threadpool(store.get_comparison, comparison_id, tenant=tenant)
    if record is None:
        raise _not_found(comparison_id)
    view, _ = await run_in_threadpool(comparison_view, record, store, artifacts)
    if view.ranking is None:
        response.headers["Retry-After"] = "5"
    return view


@router.get(
    "/{comparison_id}/report.html",
    summary="The comparison as an HTML page",
    response_class=HTMLResponse,
    responses=limited_responses(401, 404, 409),
)
async def get_comparison_html(
    comparison_id: str, tenant: TenantDep, store: StoreDep, artifacts: ArtifactsDep
) -> HTMLResponse:
    """The ranking table and one plot of the predicted loss curves; 409 until every member
    job ended."""
    record = await run_in_threadpool(store.get_comparison, comparison_id, tenant=tenant)
    if record is None:
        raise _not_found(comparison_id)
    view, reports = await run_in_threadpool(comparison_view, record, store, artifacts)
    if view.ranking is None:
        raise ProblemException(
            409,
            f"comparison {comparison_id} is {view.status}: the page exists once every model's "
            "job ended",
            code="report-not-ready",
        )
    page = await run_in_threadpool(
        render_comparison_html, view.ranking, reports, data_name=view.data
    )
    return HTMLResponse(page, headers=REPORT_HTML_HEADERS)
