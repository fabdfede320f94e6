"""Errors as RFC 9457 problem details: the ONE place that maps exceptions to HTTP statuses.

Every error answer of the API is ``application/problem+json`` with at least ``type``, ``title``,
``status`` and ``detail``; validation errors add an ``errors`` list. The mapping:

=====================================  ======  =================================================
exception                              status  notes
=====================================  ======  =================================================
plcore ``InputError`` and subclasses   422     bad model, spec, data, options, shapes
plcore ``NonDeterministicModelError``  422     the model must be a deterministic function
plcore ``ResourceLimitError``          413     over the configured size budget
plcore ``NumericalError``              500     a solver failed (reported, not hidden)
plcore ``Cancelled``                   409     the job was canceled
plcore ``PlcertError`` (base)          500
:class:`ProblemException`              its own e.g. 401, 404, 409, 413, 415
store ``JobStateConflict``             409     cancel of a finished job, report not ready
store ``IdempotencyConflict``          422     Idempotency-Key reused with another body
store ``InvalidCursor``                422
FastAPI ``RequestValidationError``     422     with ``errors``: [{loc, msg, type}]
artifact ``StorageFull``               507     the disk of the artifact store is full
webhook ``CallbackUrlRefused``         422     a callback_url that is malformed, does not
                                               resolve or points at a refused address
SQLAlchemy ``OperationalError`` and    503     the job store cannot be reached (database
  disconnects                                  restarting); with ``Retry-After``
Starlette ``HTTPException``            its own unknown route 404, wrong method 405, ...
anything else                          500     no internals in the body; logged with a trace
=====================================  ======  =================================================

:func:`job_error` turns an exception into the ``error`` object stored on a failed job, and
:func:`job_status_for` says whether it ends the job as ``failed`` or ``canceled``, so that the
worker uses the same table.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError as DatabaseOperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from plcore import errors as E
from service.store.artifacts import StorageFull
from service.store.jobs import IdempotencyConflict, InvalidCursor, JobStateConflict
from service.webhooks.urls import CallbackUrlRefused

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:plcert:problem:"

log = logging.getLogger("plcert.service.errors")

PLCORE_STATUS: dict[type[E.PlcertError], int] = {
    E.PlcertError: 500,
    E.InputError: 422,
    E.ModelFormatError: 422,
    E.ModelSpecError: 422,
    E.UnsupportedOperatorError: 422,
    E.UnsafeModelError: 422,
    E.DatasetError: 422,
    E.ShapeMismatchError: 422,
    E.OptionsError: 422,
    E.NonDeterministicModelError: 422,
    E.NumericalError: 500,
    E.ResourceLimitError: 413,
    E.Cancelled: 409,
}
"""HTTP status of every class in :data:`plcore.errors.ALL_ERRORS` (a test checks coverage)."""

PLCORE_TITLE: dict[type[E.PlcertError], str] = {
    E.PlcertError: "Certification error",
    E.InputError: "Invalid input",
    E.ModelFormatError: "Unreadable model",
    E.ModelSpecError: "Invalid model specification",
    E.UnsupportedOperatorError: "Unsupported ONNX operator",
    E.UnsafeModelError: "Unsafe model file",
    E.DatasetError: "Invalid dataset",
    E.ShapeMismatchError: "Data does not fit the model",
    E.OptionsError: "Invalid options",
    E.NonDeterministicModelError: "Non-deterministic model",
    E.NumericalError: "Numerical failure",
    E.ResourceLimitError: "Problem too large",
    E.Cancelled: "Canceled",
}

_HTTP_TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
    507: "Insufficient storage",
}

DATABASE_RETRY_AFTER_S = 5
"""``Retry-After`` of a 503 answered while the job store cannot be reached."""


def is_database_unavailable(exc: BaseException) -> bool:
    """True for an error that means the job store is unreachable (not a bad query): any
    ``OperationalError`` (refused connection, server shutting down, SQLite locked past its
    busy timeout), or a driver error that invalidated its connection (a dropped socket)."""
    return isinstance(exc, DatabaseOperationalError) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
    )


class ProblemException(Exception):
    """Raise in a route to answer with a problem+json body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _HTTP_TITLES.get(status, "Error")
        self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def _lookup(exc: E.PlcertError) -> type[E.PlcertError]:
    for cls in type(exc).__mro__:
        if cls in PLCORE_STATUS:
            return cls
    return E.PlcertError


def status_for(exc: BaseException) -> int:
    """HTTP status for an exception (the table in the module docstring)."""
    if isinstance(exc, E.PlcertError):
        return PLCORE_STATUS[_lookup(exc)]
    if isinstance(exc, ProblemException):
        return exc.status
    if isinstance(exc, JobStateConflict):
        return 409
    if isinstance(exc, IdempotencyConflict | InvalidCursor):
        return 422
    if isinstance(exc, RequestValidationError):
        return 422
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code
    if isinstance(exc, StorageFull):
        return 507
    if is_database_unavailable(exc):
        return 503
    return 500


def job_status_for(exc: BaseException) -> Literal["failed", "canceled"]:
    """The final status of a job that ended with ``exc``."""
    return "canceled" if isinstance(exc, E.Cancelled) else "failed"


def job_error(exc: BaseException) -> dict[str, Any]:
    """The ``error`` object stored on a failed job: {type, title, detail, status}.

    Unexpected exceptions are reported without their message (it may hold internals).
    """
    if isinstance(exc, E.PlcertError):
        cls = _lookup(exc)
        return {
            "type": TYPE_PREFIX + exc.code,
            "title": PLCORE_TITLE[cls],
            "detail": str(exc),
            "status": PLCORE_STATUS[cls],
        }
    if isinstance(exc, StorageFull):
        return {
            "type": TYPE_PREFIX + "insufficient-storage",
            "title": "Insufficient storage",
            "detail": f"the report ({exc.size} bytes) could not be written: the artifact "
            "store's disk is full; free space on it (PLCERT_DATA_DIR) and submit again",
            "status": 507,
        }
    return {
        "type": TYPE_PREFIX + "internal",
        "title": "Internal error",
        "detail": f"unexpected {type(exc).__name__} in the worker; see the worker log",
        "status": 500,
    }


def problem_body(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    code: str | None = None,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An RFC 9457 problem object (``type`` is ``about:blank`` for plain HTTP errors)."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code if code else "about:blank",
        "title": title or _HTTP_TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    request: Request | None = None,
    title: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """A ``JSONResponse`` with media type application/problem+json."""
    instance = request.url.path if request is not None else None
    body = problem_body(status, detail, title=title, code=code, instance=instance, extra=extra)
    return JSONResponse(
        jsonable_encoder(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # Keep loc / msg / type; drop "input" and "ctx" (they can echo large or secret values).
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in errors
    ]


async def _plcore_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, E.PlcertError)
    cls = _lookup(exc)
    return problem_response(
        PLCORE_STATUS[cls], str(exc), request=request, title=PLCORE_TITLE[cls], code=exc.code
    )


async def _problem_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemException)
    return problem_response(
        exc.status,
        exc.detail,
        request=request,
        title=exc.title,
        code=exc.code,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _store_handler(request: Request, exc: Exception) -> JSONResponse:
    code = {
        JobStateConflict: "state-conflict",
        IdempotencyConflict: "idempotency-key-reuse",
        InvalidCursor: "invalid-cursor",
    }[type(exc)]
    return problem_response(status_for(exc), str(exc), request=request, code=code)


async def _storage_full_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StorageFull)
    log.error("artifact store full: %s (%s %s)", exc, request.method, request.url.path)
    return problem_response(
        507,
        f"the server has no space left to store this request ({exc.size} bytes could not be "
        "written); nothing was stored: retry later",
        request=request,
        code="insufficient-storage",
    )


async def _callback_url_handler(request: Request, exc: Exception) -> JSONResponse:
    detail = str(exc)
    return problem_response(
        422,
        detail,
        request=request,
        title="Callback URL refused",
        code="invalid-callback-url",
        extra={"errors": [{"loc": ["body", "callback_url"], "msg": detail, "type": "url"}]},
    )


async def _database_handler(request: Request, exc: Exception) -> JSONResponse:
    if not is_database_unavailable(exc):
        return internal_error_response(request, exc)
    log.warning(
        "job store unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return problem_response(
        503,
        "the job store is not reachable at the moment (database restarting?); retry later",
        request=request,
        code="database-unavailable",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc.errors())
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    detail = f"{where}: {first['msg']}" if where else str(first["msg"])
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return problem_response(
        422,
        detail,
        request=request,
        title="Invalid request",
        code="validation",
        extra={"errors": errors},
    )


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _HTTP_TITLES.get(exc.status_code, "")
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
        # Starlette's Allow names the first route of the path only; a path served by several
        # routes (GET and DELETE /v1/certifications/{id}) needs all of their methods.
        headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
    return problem_response(exc.status_code, detail, request=request, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method that the OpenAPI document lists at this request's path (HEAD with GET).

    Read from the document, not from the router's internals, so that Allow and the OpenAPI
    always agree (what clients and schemathesis compare).
    """
    methods: set[str] = set()
    path = request.url.path
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {m.upper() for m in item if m in _HTTP_METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def internal_error_response(request: Request, exc: BaseException) -> JSONResponse:
    """500 problem for an unexpected exception: logged with its trace, no internals in the body."""
    log.error(
        "unhandled %s on %s %s",
        type(exc).__name__,
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return problem_response(
        500,
        "an internal error occurred; it was logged with the request id",
        request=request,
        code="internal",
    )


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    return internal_error_response(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler of this module on ``app``."""
    app.add_exception_handler(E.PlcertError, _plcore_handler)
    app.add_exception_handler(ProblemException, _problem_handler)
    for cls in (JobStateConflict, IdempotencyConflict, InvalidCursor):
        app.add_exception_handler(cls, _store_handler)
    app.add_exception_handler(StorageFull, _storage_full_handler)
    app.add_exception_handler(CallbackUrlRefused, _callback_url_handler)
    app.add_exception_handler(DBAPIError, _database_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
