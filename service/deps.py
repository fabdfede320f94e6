"""Typed FastAPI dependencies: settings, stores, the dispatcher and the caller's tenant.

Authentication: the ``X-API-Key`` header (declared as an OpenAPI ``apiKey`` security scheme so
that Swagger's *Authorize* button works). A key is looked up by its SHA-256 among the keys of
``PLCERT_API_KEYS`` and the ``api_keys`` table. With no key configured anywhere, authentication
is off and every caller is the tenant ``"default"`` (the service then binds loopback only).

A revoked key (``plcert keys revoke``) or a key removed from ``PLCERT_API_KEYS`` is answered 401
on every route, exactly like an unknown key: there is no separate revocation list.

Tenancy limits: :func:`rate_limit` (``PLCERT_RATE_LIMIT``, every ``/v1`` route) and
:func:`check_tenant_quota` (``PLCERT_MAX_QUEUED_PER_TENANT`` / ``PLCERT_MAX_RUNNING_PER_TENANT``,
at submit) answer 429 problem+json with a ``Retry-After`` header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from service.config import DEFAULT_TENANT, Settings, hash_api_key
from service.errors import ProblemException
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobRecord, JobStore

Dispatcher = Callable[[JobRecord], None]
"""Sends a stored job to the workers (``service.jobs_dispatch.enqueue`` in production)."""

api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKey",
    description="API key of your tenant (PLCERT_API_KEYS or the api_keys table).",
)


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> JobStore:
    """The app's job store."""
    store: JobStore = request.app.state.store
    return store


def get_artifacts(request: Request) -> ArtifactStore:
    """The app's artifact store."""
    artifacts: ArtifactStore = request.app.state.artifacts
    return artifacts


def get_metrics(request: Request) -> Metrics:
    """The app's metrics registry."""
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_dispatcher(request: Request) -> Dispatcher:
    """The app's dispatcher (tests may override this dependency)."""
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def _unauthorized(detail: str) -> ProblemException:
    return ProblemException(
        401, detail, code="unauthorized", headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'}
    )


async def get_tenant(
    settings: SettingsDep,
    store: StoreDep,
    api_key: Annotated[str | None, Security(api_key_scheme)] = None,
) -> str:
    """The tenant of the caller; 401 problem when keys exist and this one is missing or wrong."""
    env_keys = settings.api_key_hashes
    if not env_keys and not await run_in_threadpool(store.has_api_keys):
        return DEFAULT_TENANT
    if not api_key:
        raise _unauthorized("missing X-API-Key header")
    digest = hash_api_key(api_key)
    tenant = env_keys.get(digest) or await run_in_threadpool(store.tenant_for_key, digest)
    if tenant is None:
        raise _unauthorized("invalid API key")
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]


QUOTA_RETRY_AFTER_S = 30
"""Retry-After of a 429 ``tenant-quota``: when a job of the tenant may have finished."""


async def rate_limit(request: Request, tenant: TenantDep) -> str:
    """Take one request token of the caller's tenant; 429 ``rate-limited`` when none is left
    (``service.ratelimit``). A router dependency of the ``/v1`` routers."""
    limiter: RateLimiter = request.app.state.rate_limiter
    wait_s = limiter.acquire(tenant)
    if wait_s:
        raise ProblemException(
            429,
            f"tenant {tenant!r} sent more than {limiter.per_minute} requests per minute "
            f"(PLCERT_RATE_LIMIT); retry after {wait_s} s",
            title="Too many requests",
            code="rate-limited",
            headers={"Retry-After": str(wait_s)},
            extra={"limit_per_minute": limiter.per_minute, "retry_after_s": wait_s},
        )
    return tenant


def check_tenant_quota(settings: Settings, store: JobStore, tenant: str) -> None:
    """429 ``tenant-quota`` when the tenant holds as many unfinished jobs as it may.

    A submission is refused when the tenant has ``PLCERT_MAX_QUEUED_PER_TENANT`` queued jobs,
    or ``max_queued + max_running`` queued and running ones (``max_running`` alone when the
    queued cap is 0). The running cap is enforced here, at submit, not when a worker claims:
    with only ``PLCERT_MAX_RUNNING_PER_TENANT`` set a tenant never has more jobs running; with
    both set its queued jobs may all start. Concurrent submissions of one tenant are counted
    before either is stored, so they may overshoot the cap by the number in flight.
    """
    max_q, max_r = settings.max_queued_per_tenant, settings.max_running_per_tenant
    if not max_q and not max_r:
        return
    counts = store.unfinished_counts(tenant)
    queued, running = counts["queued"], counts["running"]
    reasons = []
    if max_q and queued >= max_q:
        reasons.append(f"{queued} queued jobs (PLCERT_MAX_QUEUED_PER_TENANT={max_q})")
    if max_r and queued + running >= max_r + max_q:
        reasons.append(
            f"{queued + running} queued or running jobs (PLCERT_MAX_QUEUED_PER_TENANT + "
            f"PLCERT_MAX_RUNNING_PER_TENANT = {max_q + max_r})"
        )
    if reasons:
        raise ProblemException(
            429,
            f"tenant {tenant!r} has {' and '.join(reasons)}: wait for a job to finish, or "
            "cancel one",
            title="Tenant job quota reached",
            code="tenant-quota",
            headers={"Retry-After": str(QUOTA_RETRY_AFTER_S)},
            extra={
                "queued": queued,
                "running": running,
                "max_queued_per_tenant": max_q,
                "max_running_per_tenant": max_r,
            },
        )
