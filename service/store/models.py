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
    BigInteger,
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

# ----- width studies (issue 12): one study, one row per (width or depth, seed) point ----------

STUDY_POINT_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")

studies = Table(
    "studies",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("values", JSON, nullable=False),
    Column("seeds", JSON, nullable=False),
    Column("fixed", Integer, nullable=True),  # the depth of a width study, the width of a depth one
    Column("options", JSON, nullable=False),
    Column("data_ref", String(200), nullable=False),
    Column("data_format", String(32), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("n_points", Integer, nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    # set (compare-and-set) by the one task that assembles the result
    Column("finishing", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime(), nullable=True),
    Column("error", JSON, nullable=True),
    Column("result_ref", String(200), nullable=True),
    Column("html_ref", String(200), nullable=True),
    Index("ix_studies_tenant_created", "tenant", "created_at", "id"),
)

study_points = Table(
    "study_points",
    metadata,
    Column(
        "study_id",
        String(32),
        ForeignKey("studies.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("width", Integer, nullable=False),
    Column("depth", Integer, nullable=True),
    Column("seed", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("worker_id", String(200), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("row", JSON, nullable=True),
    Column("error", JSON, nullable=True),
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
