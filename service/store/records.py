"""Value types of the job store: job records, heartbeat answers, errors and cursors."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.engine import RowMapping

from service.store.models import TERMINAL_STATUSES, jobs

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
FinalStatus = Literal["succeeded", "failed", "canceled"]


class StoreError(Exception):
    """Base of the job store's own errors (mapped to HTTP in ``service.errors``)."""


class JobStateConflict(StoreError):
    """The job is in a state that forbids the operation (e.g. cancel of a finished job)."""

    def __init__(self, job_id: str, status: str, operation: str) -> None:
        super().__init__(f"job {job_id} is {status}: cannot {operation}")
        self.job_id, self.status, self.operation = job_id, status, operation


class IdempotencyConflict(StoreError):
    """An Idempotency-Key reused with a different request body."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was used for job {job_id} with a different request body"
        )
        self.key, self.job_id = key, job_id


class InvalidCursor(StoreError):
    """A pagination cursor that this store did not produce."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobRecord:
    """One certification job as stored (the state machine is in ``service.store.jobs``).

    ``model_format`` is ``"onnx"`` or ``"json"``; ``data_format`` is ``"npz"``, ``"npy"``,
    ``"csv"``, ``"json"`` or ``"named"`` (see ``service.validation``). ``*_ref`` are artifact
    refs (``service.store.artifacts``). ``error`` is ``{type, title, detail, status}`` from
    ``service.errors.job_error``. ``lease_expires_at`` is set while a worker holds the job.
    ``callback_url`` and ``webhook_*``: the terminal event's target and delivery state
    (``service.store.webhooks``).
    """

    id: str
    tenant: str
    status: JobStatus
    attempt: int
    progress_fraction: float
    progress_stage: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    error: dict[str, Any] | None
    model_ref: str
    data_ref: str
    report_ref: str | None
    html_ref: str | None
    options: dict[str, Any]
    model_format: str
    data_format: str
    queue: str
    cancel_requested: bool
    verdict: str | None
    worker_id: str | None
    lease_expires_at: datetime | None
    weights_ref: str | None = None
    deleted_at: datetime | None = None
    callback_url: str | None = None
    webhook_status: str | None = None
    webhook_attempts: int = 0
    webhook_next_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the job succeeded, failed or was canceled."""
        return self.status in TERMINAL_STATUSES

    @property
    def duration_s(self) -> float | None:
        """Seconds from the (last) start to the finish, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class HeartbeatResult:
    """Answer to a worker's heartbeat.

    Attributes:
        ok: False when the worker no longer owns the job (stale attempt, job finished or
            re-claimed): it must stop and drop its result.
        cancel_requested: True when the user asked to cancel (or deleted the job).
    """

    ok: bool
    cancel_requested: bool


_RECORD_FIELDS = [f for f in JobRecord.__dataclass_fields__ if f in jobs.c]


def record_from_row(row: RowMapping | Mapping[str, Any]) -> JobRecord:
    return JobRecord(**{f: row[f] for f in _RECORD_FIELDS})


CURSOR_PATTERN = r"^WyI[A-Za-z0-9_-]{1,253}$"
"""What :func:`encode_cursor` produces: unpadded base64url of a JSON ``["<time>", "<id>"]``."""
CURSOR_MAX_LENGTH = 256


def encode_cursor(created_at: datetime, job_id: str) -> str:
    """Opaque cursor for the position after (created_at, id) in newest-first order."""
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of :func:`encode_cursor`; raises :class:`InvalidCursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, job_id = json.loads(raw)
        created = datetime.fromisoformat(ts)
        if not isinstance(job_id, str) or created.tzinfo is None:
            raise ValueError("bad cursor content")
        # In UTC here, so that a well-formed time outside datetime's range once shifted
        # ("9999-12-31T23:00:00-23:00") is an invalid cursor, not an OverflowError later.
        return created.astimezone(UTC), job_id
    except (ValueError, TypeError, OverflowError, binascii.Error, json.JSONDecodeError) as exc:
        raise InvalidCursor(f"invalid cursor {cursor[:40]!r}") from exc
