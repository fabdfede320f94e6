"""ASGI middleware: request ids, access logs and metrics, body size cap, last-resort 500s.

Pure ASGI (no ``BaseHTTPMiddleware``) so that the request id context variable is visible in
every log call of the request, and so that the body cap applies while the body streams in:
Starlette itself does not cap uploads.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

import anyio
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ProblemException, internal_error_response, problem_response
from service.logging import request_id_var
from service.metrics import Metrics

log = logging.getLogger("plcert.service.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Assigns X-Request-ID, logs one line per request, records metrics, answers 500s."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Request(scope).headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if response_started:
                raise
            response = internal_error_response(Request(scope), exc)
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, elapsed)
            log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 2), "route": route},
            )
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Answers 413 when a request body exceeds ``max_bytes`` (by header, or while streaming)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> ProblemException:
        return ProblemException(
            413,
            f"request body is {size} bytes; the limit is {self.max_bytes} bytes "
            "(PLCERT_MAX_UPLOAD_BYTES)",
            code="body-too-large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Request(scope).headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            exc = self._too_large(declared)
            response = problem_response(413, exc.detail, request=Request(scope), code=exc.code)
            await response(scope, receive, send)
            return
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(f"more than {self.max_bytes}")
            return message

        await self.app(scope, capped_receive, send)


class BodyReadTimeoutMiddleware:
    """Answers 408 when a client stops sending its body for ``timeout_s`` seconds.

    uvicorn bounds idle keep-alive connections but not a request that stalls after its headers;
    without this, each such request holds a connection and a handler forever.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def timed_receive() -> Message:
            try:
                with anyio.fail_after(self.timeout_s):
                    return await receive()
            except TimeoutError:
                raise ProblemException(
                    408,
                    f"no request body data for {self.timeout_s:g} s (PLCERT_BODY_READ_TIMEOUT_S)",
                    code="body-timeout",
                    headers={"Connection": "close"},
                ) from None

        await self.app(scope, timed_receive, send)
