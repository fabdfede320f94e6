"""The FastAPI application: ``create_app(settings)`` wires settings, stores, routes and errors.

``uvicorn --factory service.main:create_app`` serves it; ``plcert serve`` starts it beside an
embedded worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

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
from service.routes import certifications, health
from service.routes.docs import install_docs
from service.schemas import CertificationCreateJSON
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobRecord, JobStore

log = logging.getLogger("plcert.service")

TITLE = "plcert"
DESCRIPTION = """Certifies whether gradient descent trains a given network on given data to zero
loss (PL* condition of Liu, Zhu and Belkin), and how fast.

Submit a model and data to `POST /v1/certifications`, poll the job, then fetch the report.
Errors are RFC 9457 `application/problem+json`. Send your key in the `X-API-Key` header.
"""


def celery_dispatcher(settings: Settings) -> Dispatcher:
    """Sends jobs with ``service.jobs_dispatch.enqueue`` (imported on first use: Celery is big)."""

    def send(job: JobRecord) -> None:
        from service import jobs_dispatch

        jobs_dispatch.enqueue(job, settings)

    return send


def _no_dispatch(job: JobRecord) -> None:
    log.info("dispatch disabled: job %s stays queued", job.id, extra={"job_id": job.id})


def _safe_url(url: str) -> str:
    """The URL without credentials, for logs."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.split("@")[-1] if sep else url


_PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
}


def _errors_as_problems(schema: dict[str, Any]) -> None:
    """Document every 4xx/5xx answer as problem+json only (what the handlers send), including
    FastAPI's automatic 422, and drop its now unused HTTPValidationError schemas."""
    for operations in schema.get("paths", {}).values():
        for op in operations.values():
            for code, resp in op.get("responses", {}).items():
                if code[:1] in ("4", "5"):
                    resp["content"] = dict(_PROBLEM_CONTENT)
                    if code == "422":
                        resp["description"] = "Invalid request (problem+json with errors)"
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API app: migrates the job store, mounts routes, docs, metrics and handlers."""
    settings = settings or get_settings()
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
    )
    app.state.settings = settings
    app.state.store = store
    app.state.artifacts = ArtifactStore(settings.artifacts_dir)
    app.state.metrics = metrics
    app.state.dispatcher = (
        _no_dispatch if settings.dispatch == "none" else celery_dispatcher(settings)
    )

    install_error_handlers(app)
    app.include_router(certifications.router)
    app.include_router(health.router)
    install_docs(app, title=TITLE)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(BodyReadTimeoutMiddleware, timeout_s=settings.body_read_timeout_s)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            # The submit route reads its body itself (to stream under a cap and to accept two
            # content types), so its JSON body model is added to the components by hand.
            body_schema = TypeAdapter(CertificationCreateJSON).json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, sub in body_schema.pop("$defs", {}).items():
                components.setdefault(name, sub)
            components["CertificationCreateJSON"] = body_schema
            _errors_as_problems(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
