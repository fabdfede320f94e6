"""Structured logs: one JSON object per line (ts, level, logger, msg, request_id, job_id).

``request_id`` is set by the API's request-id middleware and ``job_id`` by :func:`bind_job_id`
(the worker wraps each task in it); both travel in context variables, so every log call in the
request or task carries them without passing them around.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("plcert_request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("plcert_job_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


@contextmanager
def bind_job_id(job_id: str) -> Iterator[None]:
    """Tag every log record in this block with ``job_id``."""
    token = job_id_var.set(job_id)
    try:
        yield
    finally:
        job_id_var.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; ``extra={...}`` fields are included."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id_var.get()
        jid = getattr(record, "job_id", None) or job_id_var.get()
        if rid:
            out["request_id"] = rid
        if jid:
            out["job_id"] = jid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # ASCII only: U+2028, U+2029 and U+0085 end a line for some log readers.
        return json.dumps(out, default=str, ensure_ascii=True)


def escape_unprintable(text: str) -> str:
    """``text`` with every unprintable character (CR, LF, NUL, U+0085, U+2028, ...) escaped,
    so that a request path cannot write a line of its own into a text log."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class TextFormatter(logging.Formatter):
    """A one-line text format; the message is escaped (the traceback, if any, follows it)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_unprintable(super().formatMessage(record))


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Send the ``plcert`` and ``uvicorn`` loggers to stderr, as JSON lines by default."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    for name in ("plcert", "uvicorn", "uvicorn.error", "celery"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.setLevel(level)
        lg.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # the API logs each request itself
