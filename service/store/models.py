"""Table definitions of the job store (SQLAlchemy Core).

The Alembic revisions in ``service/store/migrations`` create exactly these tables; a test
compares the migrated schema with this metadata.

Timestamps are stored as naive UTC (``TIMESTAMP WITHOUT TIME ZONE`` / SQLite text, always with
microseconds) through :class:`UTCDateTime`, and come back timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
)

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
TERMINAL_STATUSES = ("succeeded", "failed", "canceled")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, naive UTC in the database, aware UTC out."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the job store; use UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("progress_fraction", Float, nullable=False, default=0.0),
    Column("progress_stage", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime(), nullable=True),
    Column("error", JSON, nullable=True),
    Column("model_ref", String(200), nullable=False),
    Column("data_ref", String(200), nullable=False),
    Column("weights_ref", String(200), nullable=True),
    Column("report_ref", String(200), nullable=True),
    Column("html_ref", String(200), nullable=True),
    Column("options", JSON, nullable=False),
    Column("model_format", String(16), nullable=False),
    Column("data_format", String(32), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("verdict", String(32), nullable=True),
    Column("worker_id", String(200), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    # Set once a deleted, finished job's files that no other job shares were removed.
    Column("artifacts_purged_at", UTCDateTime(), nullable=True),
    # Webhooks (service.webhooks): where to send the terminal event, and its delivery state
    # (None: not started; pending, delivered, failed), attempts so far, next attempt's time.
    Column("callback_url", String(2048), nullable=True),
    Column("webhook_status", String(16), nullable=True),
    Column("webhook_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("webhook_next_at", UTCDateTime(), nullable=True),
    Index("ix_jobs_tenant_created", "tenant", "created_at", "id"),
    Index("ix_jobs_status", "status"),
)

idempotency = Table(
    "idempotency",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("body_sha256", String(64), nullable=False),
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_sha256", String(64), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("attempted_at", UTCDateTime(), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(500), nullable=True),
    Column("duration_ms", Float, nullable=False),
    Column("response_prefix", String(256), nullable=True),
    Column("succeeded", Boolean, nullable=False),
)

webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("secret", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

comparisons = Table(
    "comparisons",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # [{"job_id", "name", "model_sha256"}, ...] in submission order; each job is an ordinary
    # certification job of the same tenant.
    Column("members", JSON, nullable=False),
    Column("data_name", String(200), nullable=False),
    Index("ix_comparisons_tenant_created", "tenant", "created_at"),
)
