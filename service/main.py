"""The FastAPI application: ``create_app(settings)`` wires settings, stores, routes and errors.

``uvicorn --factory service.main:create_app`` serves it; ``plcert serve`` starts it beside an
embedded worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

import plcore
from service.config import Settings, get_settings
from service.deps import Dispatcher
from service.errors import install_error_handlers
from service.metrics import Metrics
from service.middleware import (
    BodyReadTimeoutMiddleware,
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
)
from service.openapi import complete as complete_openapi
from service.openapi import for_auth_mode
from service.ratelimit import RateLimiter
from service.routes import certifications, comparisons, estimates, health, studies, webhooks
from service.routes.docs import install_docs
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobRecord, JobStore
from service.threads import set_torch_threads

log = logging.getLogger("plcert.service")

TITLE = "plcert"
DESCRIPTION = """Certifies whether gradient descent trains a given network on given data to zero
loss (PL* condition of Liu, Zhu and Belkin), and how fast.

Submit a model and data to `POST /v1/certifications`, poll the job, then fetch the report.
`POST /v1/estimates` with the same body estimates the job's time and memory (nothing queued).
Errors are RFC 9457 `application/problem+json`. Send your key in the `X-API-Key` header.
"""


def celery_dispatcher(settings: Settings) -> Dispatcher:
    """Sends jobs with ``service.jobs_dispatch.enqueue`` (imported on first use: Celery is big)."""

    def send(job: JobRecord) -> None:
        from service import jobs_dispatch

        jobs_dispatch.enqueue(job, settings)

    return send


def _group_dispatch(jobs: Sequence[JobRecord], settings: Settings) -> None:
    """Sends a comparison's jobs as one Celery group (a no-op when PLCERT_DISPATCH=none)."""
    from service import jobs_dispatch

    jobs_dispatch.enqueue_group(jobs, settings)


def _no_dispatch(job: JobRecord) -> None:
    log.info("dispatch disabled: job %s stays queued", job.id, extra={"job_id": job.id})


def _safe_url(url: str) -> str:
    """The URL without credentials, for logs."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.split("@")[-1] if sep else url


API_TORCH_THREADS = 1
"""torch threads of the API process: its validation threads load models at submit, beside the
workers; one thread each keeps them from oversubscribing the CPU (``service.threads``)."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API app: migrates the job store, mounts routes, docs, metrics and handlers.

    Sets this process's torch threads to :data:`API_TORCH_THREADS` (threads started later,
    such as the validation threads, inherit the count).
    """
    settings = settings or get_settings()
    threads = set_torch_threads(API_TORCH_THREADS)
    log.info("API: torch threads intra-op %d, inter-op %d", threads.intra_op, threads.inter_op)
    settings.ensure_dirs()
    store = JobStore(settings.resolved_database_url, idempotency_ttl_s=settings.idempotency_ttl_s)
    store.migrate()
    metrics = Metrics(store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("API ready (database %s)", _safe_url(settings.resolved_database_url))
        yield
        store.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title=TITLE,
        version=plcore.__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # No 307 to the slash-less path: Starlette builds its Location from the Host header,
        # before authentication.
        redirect_slashes=False,
        # operationId = the route function's name (create_certification, get_report, ...), so
        # that generated clients get readable names instead of FastAPI's path-derived ids
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.artifacts = ArtifactStore(settings.artifacts_dir)
    app.state.metrics = metrics
    app.state.rate_limiter = RateLimiter(settings.rate_limit)
    app.state.dispatcher = (
        _no_dispatch if settings.dispatch == "none" else celery_dispatcher(settings)
    )
    app.state.group_dispatcher = lambda jobs: _group_dispatch(jobs, settings)

    install_error_handlers(app)
    app.include_router(certifications.router)
    app.include_router(estimates.router)
    app.include_router(studies.router)
    app.include_router(webhooks.router)
    app.include_router(comparisons.router)
    app.include_router(health.router)
    install_docs(app, title=TITLE)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(BodyReadTimeoutMiddleware, timeout_s=settings.body_read_timeout_s)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_openapi(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        keys = bool(settings.api_key_hashes) or store.has_api_keys()
        if keys not in documents:
            documents[keys] = for_auth_mode(app.openapi_schema, keys_configured=keys)
        return documents[keys]

    documents: dict[bool, dict[str, Any]] = {}
    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _operation_id(route: APIRoute) -> str:
    """A route's operationId: its function name (unique across the app, checked in tests)."""
    return route.name
