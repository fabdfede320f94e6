"""``/v1/certifications``: submit, read, cancel, delete and list certification jobs.

Routes are thin: parse, call the store / loaders, shape the answer. The submit path:

1. read the body (multipart or JSON) under the size cap (``BodySizeLimitMiddleware``);
2. normalise it to bytes, formats and validated options, and hash that
   (``service.submission``);
3. replay an earlier job for the same ``Idempotency-Key`` and body, or 422 for another body;
4. check the job's size from the bytes alone against the ``PLCERT_MAX_*`` limits, before
   anything is built (``service.guards``: a 422 with the limit's own code);
5. load model and data in a thread (a bad model or data is a 422 now, not a failed job later)
   and estimate the job's cost: a job whose estimated peak memory exceeds
   ``PLCERT_WORKER_MEMORY_LIMIT`` is a 422 (``plcore.estimate.cost``);
6. store the bytes as artifacts, the job in the store, and send it to the workers.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from plcore.estimate.cost import CostEstimate, estimate_for
from plcore.estimate.limits import SizeLimits
from plcore.report.schema import Report
from service.deps import (
    ArtifactsDep,
    DispatcherDep,
    SettingsDep,
    StoreDep,
    TenantDep,
    check_tenant_quota,
    rate_limit,
)
from service.errors import ProblemException
from service.guards import check_submission
from service.schemas import (
    API_PREFIX,
    CertificationJob,
    CertificationList,
    JobStatus,
    limited_responses,
)
from service.store.jobs import CURSOR_MAX_LENGTH, CURSOR_PATTERN, JobRecord, JobStore
from service.store.purge import purge_deleted_artifacts
from service.submission import (
    SUBMIT_OPENAPI,
    Submission,
    check_callback,
    read_submission,
    store_submission,
)
from service.validation import load_inputs
from service.webhooks.events import notify_finished

log = logging.getLogger("plcert.service.api")

REPORT_HTML_HEADERS = {
    # The report is self-contained (inline CSS, plots as data: URIs, no scripts); a strict
    # policy keeps any text that came from the upload (names, descriptions) inert.
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(
    prefix=f"{API_PREFIX}/certifications",
    tags=["certifications"],
    dependencies=[Depends(rate_limit)],
)


def _job_response(response: Response, job: JobRecord) -> CertificationJob:
    response.headers["Location"] = f"{API_PREFIX}/certifications/{job.id}"
    if not job.is_terminal:
        response.headers["Retry-After"] = "2"
    return CertificationJob.from_record(job)


async def validate_and_estimate(
    sub: Submission, timeout_s: float, *, limits: SizeLimits
) -> CostEstimate:
    """Check the sizes against ``limits`` (``service.guards``, nothing allocated), then load
    model and data in a worker thread, within ``timeout_s`` (PLCERT_VALIDATION_TIMEOUT_S), and
    estimate the run's cost from their sizes.

    A thread cannot be killed: on timeout the answer is 413 at once and the thread finishes on
    its own; the size caps of the loaders bound how long that can take.
    """

    def load() -> CostEstimate:
        check_submission(sub.model, sub.model_format, sub.data, sub.data_format, limits)
        model, data = load_inputs(
            sub.model,
            sub.model_format,
            sub.data,
            sub.data_format,
            weights=sub.weights,
            trainable=sub.options.trainable,
            frozen=sub.options.frozen,
        )
        return estimate_for(model, data, sub.options)

    try:
        with anyio.fail_after(timeout_s):
            return await anyio.to_thread.run_sync(load, abandon_on_cancel=True)
    except TimeoutError:
        raise ProblemException(
            413,
            f"loading the model and data took longer than {timeout_s:g} s "
            "(PLCERT_VALIDATION_TIMEOUT_S); submit a smaller problem",
            title="Problem too large",
            code="validation-timeout",
        ) from None


def refuse_if_over_memory(estimate: CostEstimate, limit: int) -> None:
    """422 when the estimated peak memory of the job exceeds the worker's limit."""
    if estimate.peak_memory_bytes <= limit:
        return
    gib = 2**30
    raise ProblemException(
        422,
        f"the job would need about {estimate.peak_memory_bytes / gib:.2f} GiB of memory "
        f"(estimated peak), more than the {limit / gib:.2f} GiB a worker allows "
        f"(PLCERT_WORKER_MEMORY_LIMIT); N = {estimate.size.N} outputs and "
        f"m = {estimate.size.n_params} parameters: use fewer samples or a smaller model "
        "(POST /v1/estimates shows the terms)",
        title="Job exceeds the worker memory limit",
        code="job-exceeds-worker-memory",
        extra={
            "estimated_peak_memory_bytes": estimate.peak_memory_bytes,
            "worker_memory_limit_bytes": limit,
            "memory": estimate.memory,
        },
    )


async def _get_or_404(store: JobStore, job_id: str, tenant: str) -> JobRecord:
    job = await run_in_threadpool(store.get_job, job_id, tenant=tenant)
    if job is None:
        raise ProblemException(404, f"no certification job {job_id!r}", code="job-not-found")
    return job


@router.post(
    "",
    status_code=202,
    response_model=CertificationJob,
    summary="Submit a certification job",
    openapi_extra=SUBMIT_OPENAPI,
    responses=limited_responses(401, 413, 415, 422, 507),
)
async def create_certification(
    request: Request,
    response: Response,
    tenant: TenantDep,
    settings: SettingsDep,
    store: StoreDep,
    artifacts: ArtifactsDep,
    dispatch: DispatcherDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Retry-safe submission: the same key and body give the same job.",
        ),
    ] = None,
) -> CertificationJob:
    """Submit a model and data for certification. Answers 202 with the queued job.

    A job over a size limit (``PLCERT_MAX_PARAMS``, ``PLCERT_MAX_OUTPUTS``,
    ``PLCERT_MAX_KERNEL_BYTES``, ``PLCERT_MAX_HESSIAN_WORK``) is a 422 with the limit's code,
    the estimate and the limit, checked before anything is built. The model and data are then
    loaded at once: an unreadable model, an invalid spec, NaN data or
    data that does not fit the model is answered with 422 here, and so is a job whose estimated
    peak memory exceeds the worker's limit (``PLCERT_WORKER_MEMORY_LIMIT``; see
    ``POST /v1/estimates``).

    429 ``tenant-quota`` when the tenant already holds as many queued (or queued and running)
    jobs as ``PLCERT_MAX_QUEUED_PER_TENANT`` / ``PLCERT_MAX_RUNNING_PER_TENANT`` allow; 429
    ``rate-limited`` beyond ``PLCERT_RATE_LIMIT`` requests per minute (every ``/v1`` route).
    Both carry ``Retry-After``. An Idempotency-Key replay is answered before the quota check.

    507 ``insufficient-storage`` when the files do not fit on the server's disk: nothing of
    the submission is stored (no file, no job).
    """
    sub = await read_submission(request)
    await check_callback(sub.callback_url, allow_private=settings.webhook_allow_private)
    body_sha256 = sub.body_sha256()
    if idempotency_key is not None:
        found = await run_in_threadpool(store.find_idempotent, tenant=tenant, key=idempotency_key)
        if found is not None:
            stored_hash, job = found
            if stored_hash != body_sha256:
                raise ProblemException(
                    422,
                    f"Idempotency-Key {idempotency_key!r} was already used with a different "
                    "request body",
                    code="idempotency-key-reuse",
                )
            response.headers["Idempotent-Replayed"] = "true"
            return _job_response(response, job)

    await run_in_threadpool(check_tenant_quota, settings, store, tenant)
    estimate = await validate_and_estimate(
        sub, settings.validation_timeout_s, limits=settings.size_limits
    )
    refuse_if_over_memory(estimate, settings.worker_memory_limit)
    queue = settings.queue_gpu if sub.options.device.startswith("cuda") else settings.queue_cpu
    job, created = await run_in_threadpool(
        store_submission,
        sub,
        tenant=tenant,
        queue=queue,
        store=store,
        artifacts=artifacts,
        idempotency_key=idempotency_key,
        body_sha256=body_sha256,
    )
    if created:
        try:
            await run_in_threadpool(dispatch, job)
        except Exception:
            # The job is stored and queued; the janitor re-sends queued jobs that no worker
            # claimed (PLCERT_QUEUED_ORPHAN_AFTER_S), so the submission still succeeds.
            log.exception("could not send job %s to the broker", job.id, extra={"job_id": job.id})
        log.info("job %s submitted", job.id, extra={"job_id": job.id, "queue": queue})
    else:
        response.headers["Idempotent-Replayed"] = "true"
    return _job_response(response, job)


@router.get(
    "",
    response_model=CertificationList,
    summary="List your certification jobs, newest first",
    responses=limited_responses(401, 422),
)
async def list_certifications(
    tenant: TenantDep,
    store: StoreDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    verdict: Annotated[
        Literal["certified", "not_certified", "inconclusive"] | None,
        Query(description="Only jobs with this verdict"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
    cursor: Annotated[
        str | None,
        Query(
            max_length=CURSOR_MAX_LENGTH,
            pattern=CURSOR_PATTERN,
            description="Opaque, from next_cursor; any other value is a 422",
        ),
    ] = None,
) -> CertificationList:
    """One page of jobs; follow ``next_cursor`` until it is null."""
    items, next_cursor = await run_in_threadpool(
        store.list_jobs, tenant=tenant, status=status, verdict=verdict, limit=limit, cursor=cursor
    )
    return CertificationList(
        items=[CertificationJob.from_record(j) for j in items], next_cursor=next_cursor
    )


@router.get(
    "/{job_id}",
    response_model=CertificationJob,
    summary="Status and progress of a job",
    responses=limited_responses(401, 404),
)
async def get_certification(
    job_id: str, response: Response, tenant: TenantDep, store: StoreDep
) -> CertificationJob:
    """The job: status, progress, timestamps, error, verdict and report links."""
    job = await _get_or_404(store, job_id, tenant)
    if not job.is_terminal:
        response.headers["Retry-After"] = "2"
    return CertificationJob.from_record(job)


async def _report_ref(store: JobStore, job_id: str, tenant: str, kind: str) -> str:
    job = await _get_or_404(store, job_id, tenant)
    ref = job.report_ref if kind == "json" else job.html_ref
    if job.status != "succeeded" or ref is None:
        raise ProblemException(
            409,
            f"job {job_id} is {job.status}: the report exists once the job succeeded",
            code="report-not-ready",
            extra={"job_status": job.status},
        )
    return ref


@router.get(
    "/{job_id}/report",
    summary="The JSON report of a finished job",
    response_class=Response,
    responses={
        200: {"model": Report, "description": "The report (schema_version 1)"},
        **limited_responses(401, 404, 409),
    },
)
async def get_report(
    job_id: str, tenant: TenantDep, store: StoreDep, artifacts: ArtifactsDep
) -> Response:
    """The report JSON; 409 until the job succeeded."""
    ref = await _report_ref(store, job_id, tenant, "json")
    content = await run_in_threadpool(artifacts.get, ref)
    return Response(content, media_type="application/json")


@router.get(
    "/{job_id}/report.html",
    summary="The HTML report of a finished job",
    response_class=HTMLResponse,
    responses=limited_responses(401, 404, 409),
)
async def get_report_html(
    job_id: str, tenant: TenantDep, store: StoreDep, artifacts: ArtifactsDep
) -> HTMLResponse:
    """A self-contained HTML page; 409 until the job succeeded."""
    ref = await _report_ref(store, job_id, tenant, "html")
    content = await run_in_threadpool(artifacts.get, ref)
    return HTMLResponse(content, headers=REPORT_HTML_HEADERS)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=CertificationJob,
    summary="Cancel a job",
    responses=limited_responses(401, 404, 409),
)
async def cancel_certification(
    job_id: str, response: Response, tenant: TenantDep, store: StoreDep, settings: SettingsDep
) -> CertificationJob:
    """A queued job is canceled at once; a running one stops at the computation's next
    cancellation check (the worker refreshes the flag from the job store every 0.5 s).

    409 when the job already finished.
    """
    job = await run_in_threadpool(store.request_cancel, job_id, tenant=tenant)
    if job is None:
        raise ProblemException(404, f"no certification job {job_id!r}", code="job-not-found")
    # canceled at once (it was queued): its webhook, if it has a callback_url
    if job.is_terminal and await run_in_threadpool(notify_finished, store, job.id, settings):
        job = await _get_or_404(store, job.id, tenant)
    return _job_response(response, job)


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a job",
    responses=limited_responses(401, 404),
)
async def delete_certification(
    job_id: str, tenant: TenantDep, store: StoreDep, artifacts: ArtifactsDep
) -> Response:
    """Delete the job (a running one is asked to stop first); afterwards GET answers 404.

    Its files that no other job shares are removed now, or by the janitor once it stopped.
    """
    if not await run_in_threadpool(store.delete_job, job_id, tenant=tenant):
        raise ProblemException(404, f"no certification job {job_id!r}", code="job-not-found")
    await run_in_threadpool(purge_deleted_artifacts, store, artifacts)
    return Response(status_code=204)
