"""``/healthz`` (process alive), ``/readyz`` (database, broker, a live worker), ``/metrics``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import MetricsDep, SettingsDep, StoreDep, TenantDep
from service.errors import problem_response
from service.schemas import Health, Readiness, problem_responses

log = logging.getLogger("plcert.service.health")
router = APIRouter(tags=["operations"])

CHECK_TIMEOUT_S = 5.0


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process serves requests."""
    return Health(status="ok")


async def _run_check(fn: Callable[[], Any]) -> Any:
    with anyio.fail_after(CHECK_TIMEOUT_S):
        return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: database, broker and at least one live worker",
    responses=problem_responses(503),
)
async def readyz(request: Request, settings: SettingsDep, store: StoreDep) -> Response:
    """200 when the database and broker answer and a worker is alive; else 503 problem+json
    whose ``checks`` names what failed."""
    checks: dict[str, str] = {}
    failed: list[str] = []

    async def check(name: str, fn: Callable[[], Any], judge: Callable[[Any], str | None]) -> None:
        try:
            problem = judge(await _run_check(fn))
        except TimeoutError:
            problem = f"no answer within {CHECK_TIMEOUT_S:g} s"
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"[:300]
        checks[name] = problem or "ok"
        if problem:
            failed.append(name)

    await check("database", store.ping, lambda _: None)
    if settings.dispatch == "none":
        checks["broker"] = checks["workers"] = "skipped (PLCERT_DISPATCH=none)"
    else:
        from service import jobs_dispatch  # lazy: pulls in Celery

        await check(
            "broker",
            lambda: jobs_dispatch.broker_ping(settings),
            lambda ok: "broker did not answer" if ok is False else None,
        )
        await check(
            "workers",
            lambda: jobs_dispatch.live_workers(settings),
            lambda n: None if n and n > 0 else "no live worker answered a ping",
        )
    if failed:
        log.warning("not ready: %s", ", ".join(failed), extra={"checks": checks})
        return problem_response(
            503,
            "not ready: " + ", ".join(f"{n} ({checks[n]})" for n in failed),
            request=request,
            title="Service unavailable",
            code="not-ready",
            extra={"checks": checks},
        )
    return JSONResponse(Readiness(status="ready", checks=checks).model_dump())


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        **problem_responses(401),
    },
)
def metrics(metrics: MetricsDep, _tenant: TenantDep) -> Response:
    """Job counts and durations (from the store), queue depth, HTTP request counts and times."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
