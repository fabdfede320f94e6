"""``POST /v1/estimates``: what a certification would cost, without queuing it (a dry run).

Takes the body of ``POST /v1/certifications`` (multipart or JSON), loads model and data as a
submission does, and answers 200 with the estimated wall time and peak memory
(:mod:`plcore.estimate.cost`) and whether the job fits the worker's memory limit
(``PLCERT_WORKER_MEMORY_LIMIT``; a submission that does not fit is refused with 422).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from service.deps import SettingsDep, TenantDep, rate_limit
from service.routes.certifications import validate_and_estimate
from service.schemas import API_PREFIX, CostEstimateOut, limited_responses
from service.submission import SUBMIT_OPENAPI, read_submission

router = APIRouter(
    prefix=f"{API_PREFIX}/estimates",
    tags=["certifications"],
    dependencies=[Depends(rate_limit)],
)


@router.post(
    "",
    response_model=CostEstimateOut,
    summary="Estimate the time and memory of a certification (dry run)",
    openapi_extra=SUBMIT_OPENAPI,
    responses=limited_responses(401, 413, 415, 422),
)
async def create_estimate(
    request: Request, tenant: TenantDep, settings: SettingsDep
) -> CostEstimateOut:
    """Estimate a job from its model and data sizes; nothing is stored or queued.

    The body is that of ``POST /v1/certifications``. ``fits`` says whether a submission of the
    same body would be accepted (estimated peak memory within the worker's limit).
    """
    del tenant  # authenticated like a submission; nothing is stored for the tenant
    sub = await read_submission(request)
    estimate = await validate_and_estimate(
        sub, settings.validation_timeout_s, limits=settings.size_limits
    )
    return CostEstimateOut.from_estimate(estimate, settings.worker_memory_limit)
