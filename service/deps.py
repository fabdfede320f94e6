"""Typed FastAPI dependencies: settings, stores, the dispatcher and the caller's tenant.

Authentication: the ``X-API-Key`` header (declared as an OpenAPI ``apiKey`` security scheme so
that Swagger's *Authorize* button works). A key is looked up by its SHA-256 among the keys of
``PLCERT_API_KEYS`` and the ``api_keys`` table. With no key configured anywhere, authentication
is off and every caller is the tenant ``"default"`` (the service then binds loopback only).
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
