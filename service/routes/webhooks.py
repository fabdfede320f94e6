"""Webhook routes: a job's delivery log and the tenant's signing secret.

``GET /v1/certifications/{id}/deliveries`` lists the attempts of the job's terminal event.
``GET /v1/webhooks/secret`` shows the tenant's secret (made on first use) to verify events with;
``POST /v1/webhooks/secret/rotate`` replaces it (events are signed with the new one from then).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from service.deps import StoreDep, TenantDep, rate_limit
from service.errors import ProblemException
from service.schemas import (
    API_PREFIX,
    DeliveryAttempt,
    DeliveryList,
    WebhookSecretOut,
    limited_responses,
)
from service.store.jobs import WebhookSecret
from service.webhooks.delivery import event_id, event_type

router = APIRouter(prefix=API_PREFIX, tags=["webhooks"], dependencies=[Depends(rate_limit)])


@router.get(
    "/certifications/{job_id}/deliveries",
    response_model=DeliveryList,
    summary="Webhook deliveries of a job",
    responses=limited_responses(401, 404),
)
async def list_deliveries(job_id: str, tenant: TenantDep, store: StoreDep) -> DeliveryList:
    """The job's terminal event (when it has a ``callback_url``) and each delivery attempt:
    time, HTTP status or error, duration and the start of the answer."""
    job = await run_in_threadpool(store.get_job, job_id, tenant=tenant)
    if job is None:
        raise ProblemException(404, f"no certification job {job_id!r}", code="job-not-found")
    rows = await run_in_threadpool(store.list_deliveries, job.id)
    started = job.webhook_status is not None
    return DeliveryList(
        job_id=job.id,
        callback_url=job.callback_url,
        event_id=event_id(job.id) if started else None,
        event_type=event_type(job.status) if started else None,
        status=job.webhook_status,
        items=[DeliveryAttempt.model_validate(r, from_attributes=True) for r in rows],
    )


def _secret_out(secret: WebhookSecret) -> WebhookSecretOut:
    return WebhookSecretOut(secret=secret.secret, created_at=secret.created_at)


@router.get(
    "/webhooks/secret",
    response_model=WebhookSecretOut,
    summary="Your webhook signing secret",
    responses=limited_responses(401),
)
async def get_webhook_secret(tenant: TenantDep, store: StoreDep) -> WebhookSecretOut:
    """The secret (``whsec_...``) that signs your events; any Standard Webhooks library
    verifies them with it. Made on first use."""
    return _secret_out(await run_in_threadpool(store.webhook_secret, tenant))


@router.post(
    "/webhooks/secret/rotate",
    response_model=WebhookSecretOut,
    summary="Replace your webhook signing secret",
    responses=limited_responses(401),
)
async def rotate_webhook_secret(tenant: TenantDep, store: StoreDep) -> WebhookSecretOut:
    """A new secret; every event from now on (retries of earlier ones included) is signed
    with it."""
    return _secret_out(await run_in_threadpool(store.rotate_webhook_secret, tenant))
