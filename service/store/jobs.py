"""The job store: certification jobs, idempotency keys and API keys in SQL.

SQLite (default; WAL journal, ``busy_timeout``, writes in ``BEGIN IMMEDIATE``) or PostgreSQL
(``postgresql+psycopg://``). Every state change is a compare-and-set ``UPDATE ... WHERE`` on the
expected state (and, for a worker, on its ``attempt``), so two workers or an API process and a
worker can race without corrupting a job:

::

    queued --claim--> running --finish--> succeeded | failed | canceled
      |                 |  \\--lease expired--> (requeue) queued
      \\--cancel--> canceled   \\--cancel--> cancel_requested (the worker stops at its next beat)

A worker that lost its lease (another worker re-claimed the job, so ``attempt`` moved on) gets
``False`` from :meth:`JobStore.heartbeat` and :meth:`JobStore.finish` and must drop its result.
Deleted jobs are kept as tombstones (``deleted_at``) so that a late worker cannot resurrect them;
no read path returns them.

An Idempotency-Key holds for ``idempotency_ttl_s`` seconds (``PLCERT_IDEMPOTENCY_TTL_S``): an
older record counts as absent, so a replay after the TTL creates a new job, and a tenant's
expired records are deleted whenever that tenant stores a new one.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from service.store.comparisons import ComparisonRecord, ComparisonRecords
from service.store.engine import make_engine, migrate
from service.store.models import JOB_STATUSES, TERMINAL_STATUSES, api_keys, idempotency, jobs
from service.store.records import (
    CURSOR_MAX_LENGTH,
    CURSOR_PATTERN,
    FinalStatus,
    HeartbeatResult,
    IdempotencyConflict,
    InvalidCursor,
    JobRecord,
    JobStateConflict,
    JobStatus,
    StoreError,
    decode_cursor,
    encode_cursor,
    record_from_row,
    utcnow,
)
from service.store.webhooks import DeliveryRecord, WebhookRecords, WebhookSecret

__all__ = [
    "CURSOR_MAX_LENGTH",
    "CURSOR_PATTERN",
    "DEFAULT_IDEMPOTENCY_TTL_S",
    "ApiKeyRecord",
    "ComparisonRecord",
    "DeliveryRecord",
    "FinalStatus",
    "HeartbeatResult",
    "IdempotencyConflict",
    "InvalidCursor",
    "JobRecord",
    "JobStateConflict",
    "JobStatus",
    "JobStore",
    "StoreError",
    "WebhookSecret",
    "decode_cursor",
    "encode_cursor",
    "utcnow",
]


DEFAULT_IDEMPOTENCY_TTL_S = 86400.0
"""How long an Idempotency-Key holds unless configured (the default of PLCERT_IDEMPOTENCY_TTL_S)."""


@dataclass(frozen=True)
class ApiKeyRecord:
    """A stored API key: only its SHA-256 hex is kept, never the key.

    ``key_id`` is the first :attr:`ID_LENGTH` hex digits of the hash (what ``plcert keys``
    shows and accepts); ``revoked_at`` is None while the key is active.
    """

    ID_LENGTH = 12

    key_sha256: str
    tenant: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def key_id(self) -> str:
        """The short, non-secret name of the key (a prefix of its hash)."""
        return self.key_sha256[: self.ID_LENGTH]


class JobStore(WebhookRecords, ComparisonRecords):
    """Jobs, idempotency keys and API keys in one SQL database (see the module docstring);
    webhook state, deliveries and secrets (:class:`WebhookRecords`); comparisons
    (:class:`ComparisonRecords`)."""

    def __init__(
        self,
        database_url: str,
        *,
        echo: bool = False,
        idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S,
    ) -> None:
        if not idempotency_ttl_s > 0:
            raise ValueError(f"idempotency_ttl_s must be > 0, got {idempotency_ttl_s!r}")
        self.url = database_url
        self.engine: Engine = make_engine(database_url, echo=echo)
        self.idempotency_ttl_s = float(idempotency_ttl_s)
        self._migrate_lock = threading.Lock()

    # ----- schema -------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent; safe across processes)."""
        with self._migrate_lock:
            migrate(self.engine)

    def ping(self) -> None:
        """Raise if the database cannot be reached (for /readyz)."""
        with self._read() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(plcert_readonly=True) as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ----- creation -----------------------------------------------------------------------

    def create_job(
        self,
        *,
        tenant: str,
        model_ref: str,
        data_ref: str,
        options: Mapping[str, Any],
        model_format: str,
        data_format: str,
        queue: str,
        weights_ref: str | None = None,
        callback_url: str | None = None,
    ) -> JobRecord:
        """Insert a new queued job and return it."""
        with self._write() as conn:
            return self._insert_job(
                conn,
                tenant=tenant,
                model_ref=model_ref,
                data_ref=data_ref,
                options=options,
                model_format=model_format,
                data_format=data_format,
                queue=queue,
                weights_ref=weights_ref,
                callback_url=callback_url,
            )

    def _insert_job(self, conn: Connection, **values: Any) -> JobRecord:
        now = utcnow()
        row = {
            "id": uuid.uuid4().hex,
            "status": "queued",
            "attempt": 0,
            "progress_fraction": 0.0,
            "progress_stage": "queued",
            "created_at": now,
            "updated_at": now,
            "cancel_requested": False,
            "webhook_attempts": 0,
            **values,
            "options": dict(values["options"]),
        }
        conn.execute(insert(jobs).values(**row))
        got = conn.execute(select(jobs).where(jobs.c.id == row["id"])).mappings().one()
        return record_from_row(got)

    def _idempotency_cutoff(self, now: datetime | None) -> datetime:
        """Records created before this instant have expired."""
        return (now or utcnow()) - timedelta(seconds=self.idempotency_ttl_s)

    def find_idempotent(
        self, *, tenant: str, key: str, now: datetime | None = None
    ) -> tuple[str, JobRecord] | None:
        """(body_sha256, job) stored for this tenant's Idempotency-Key, or None.

        A record older than ``idempotency_ttl_s`` at ``now`` (default: the current time) is
        treated as absent.
        """
        with self._read() as conn:
            row = (
                conn.execute(
                    select(idempotency.c.body_sha256, idempotency.c.job_id).where(
                        idempotency.c.tenant == tenant,
                        idempotency.c.key == key,
                        idempotency.c.created_at >= self._idempotency_cutoff(now),
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            job = conn.execute(select(jobs).where(jobs.c.id == row["job_id"])).mappings().first()
        return (row["body_sha256"], record_from_row(job)) if job is not None else None

    def create_job_idempotent(
        self,
        *,
        idempotency_key: str,
        body_sha256: str,
        now: datetime | None = None,
        **job: Any,
    ) -> tuple[JobRecord, bool]:
        """Create a job once per (tenant, Idempotency-Key) within ``idempotency_ttl_s``.

        Returns ``(job, created)``: the new job and True, or the job created earlier with this
        key and the same body hash and False. Raises :class:`IdempotencyConflict` when the key
        was used with another body. Two concurrent requests with one key create one job.

        The key's record is stamped ``now`` (default: the current time). Storing it first
        deletes the tenant's records older than the TTL, the expired one of this key included
        (which frees the key for the new job).
        """
        tenant = job["tenant"]
        for _ in range(3):
            stamp = now or utcnow()
            found = self.find_idempotent(tenant=tenant, key=idempotency_key, now=stamp)
            if found is not None:
                stored_hash, existing = found
                if stored_hash != body_sha256:
                    raise IdempotencyConflict(idempotency_key, existing.id)
                return existing, False
            try:
                with self._write() as conn:
                    conn.execute(
                        delete(idempotency).where(
                            idempotency.c.tenant == tenant,
                            idempotency.c.created_at < self._idempotency_cutoff(stamp),
                        )
                    )
                    record = self._insert_job(conn, **job)
                    conn.execute(
                        insert(idempotency).values(
                            tenant=tenant,
                            key=idempotency_key,
                            body_sha256=body_sha256,
                            job_id=record.id,
                            created_at=stamp,
                        )
                    )
                return record, True
            except IntegrityError:
                continue  # a concurrent request won the key: read its job
        raise StoreError(f"could not settle Idempotency-Key {idempotency_key!r}")

    # ----- reads --------------------------------------------------------------------------

    def get_job(self, job_id: str, *, tenant: str | None = None) -> JobRecord | None:
        """The job, or None if unknown, deleted, or owned by another tenant."""
        q = select(jobs).where(jobs.c.id == job_id, jobs.c.deleted_at.is_(None))
        if tenant is not None:
            q = q.where(jobs.c.tenant == tenant)
        with self._read() as conn:
            row = conn.execute(q).mappings().first()
        return record_from_row(row) if row is not None else None

    def list_jobs(
        self,
        *,
        tenant: str,
        status: str | None = None,
        verdict: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """One page of the tenant's jobs, newest first, and the cursor of the next page.

        Keyset pagination on (created_at, id): a page never repeats or skips a job, also while
        new jobs are inserted (they sort before the first page).
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        q = select(jobs).where(jobs.c.tenant == tenant, jobs.c.deleted_at.is_(None))
        if status is not None:
            q = q.where(jobs.c.status == status)
        if verdict is not None:
            q = q.where(jobs.c.verdict == verdict)
        if cursor is not None:
            c_created, c_id = decode_cursor(cursor)
            q = q.where(
                or_(
                    jobs.c.created_at < c_created,
                    and_(jobs.c.created_at == c_created, jobs.c.id < c_id),
                )
            )
        q = q.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        with self._read() as conn:
            rows = [record_from_row(r) for r in conn.execute(q).mappings()]
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, encode_cursor(rows[-1].created_at, rows[-1].id)
        return rows, None

    # ----- worker side --------------------------------------------------------------------

    def claim(
        self, job_id: str, *, worker_id: str, lease_s: float, max_attempts: int | None = None
    ) -> JobRecord | None:
        """Take the job for ``worker_id``: queued (or running with an expired lease) -> running.

        Increments ``attempt`` and sets a lease of ``lease_s`` seconds. Returns None when the
        job is not claimable (finished, canceled, deleted, or held by a live lease): the caller
        acknowledges its message and does nothing. With ``max_attempts``, a job that was
        already claimed that many times is failed instead (a poison job that kills workers).
        """
        now = utcnow()
        claimable = and_(
            jobs.c.id == job_id,
            jobs.c.deleted_at.is_(None),
            jobs.c.cancel_requested.is_(False),
            or_(
                jobs.c.status == "queued",
                and_(jobs.c.status == "running", jobs.c.lease_expires_at < now),
            ),
        )
        with self._write() as conn:
            if max_attempts is not None:
                exhausted = conn.execute(
                    update(jobs)
                    .where(claimable, jobs.c.attempt >= max_attempts)
                    .values(
                        status="failed",
                        finished_at=now,
                        updated_at=now,
                        lease_expires_at=None,
                        error={
                            "type": "worker-lost",
                            "title": "Job abandoned",
                            "detail": f"the job was started {max_attempts} times and no "
                            "worker finished it (workers crashed or timed out)",
                        },
                    )
                )
                if exhausted.rowcount:
                    return None
            res = conn.execute(
                update(jobs)
                .where(claimable)
                .values(
                    status="running",
                    attempt=jobs.c.attempt + 1,
                    started_at=now,
                    updated_at=now,
                    worker_id=worker_id,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    progress_stage="started",
                    progress_fraction=0.0,
                )
            )
            if res.rowcount != 1:
                return None
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one()
        return record_from_row(row)

    def heartbeat(
        self,
        job_id: str,
        *,
        attempt: int,
        lease_s: float,
        fraction: float | None = None,
        stage: str | None = None,
    ) -> HeartbeatResult:
        """Extend the lease of the worker holding ``attempt`` and record its progress.

        The stored fraction never decreases within an attempt (a claim resets it to 0).
        """
        now = utcnow()
        values: dict[str, Any] = {
            "lease_expires_at": now + timedelta(seconds=lease_s),
            "updated_at": now,
        }
        if fraction is not None:
            # Never move backwards within an attempt: clients poll and plot this number.
            f = min(max(float(fraction), 0.0), 1.0)
            values["progress_fraction"] = case(
                (jobs.c.progress_fraction < f, f), else_=jobs.c.progress_fraction
            )
        if stage is not None:
            values["progress_stage"] = stage[:200]
        with self._write() as conn:
            res = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.attempt == attempt, jobs.c.status == "running")
                .values(**values)
            )
            if res.rowcount != 1:
                return HeartbeatResult(ok=False, cancel_requested=False)
            cancel = conn.execute(
                select(jobs.c.cancel_requested).where(jobs.c.id == job_id)
            ).scalar_one()
        return HeartbeatResult(ok=True, cancel_requested=bool(cancel))

    def attempt_state(self, job_id: str, *, attempt: int) -> HeartbeatResult:
        """Read (never write) whether ``attempt`` still holds the job and whether a cancel was
        requested: the cheap poll behind a worker's cancellation check.

        ``ok`` is False when the job is gone, finished, or held by another attempt.
        """
        with self._read() as conn:
            row = conn.execute(
                select(jobs.c.status, jobs.c.attempt, jobs.c.cancel_requested).where(
                    jobs.c.id == job_id
                )
            ).one_or_none()
        if row is None or row.status != "running" or row.attempt != attempt:
            return HeartbeatResult(ok=False, cancel_requested=False)
        return HeartbeatResult(ok=True, cancel_requested=bool(row.cancel_requested))

    def finish(
        self,
        job_id: str,
        *,
        attempt: int,
        status: FinalStatus,
        report_ref: str | None = None,
        html_ref: str | None = None,
        error: Mapping[str, Any] | None = None,
        verdict: str | None = None,
    ) -> bool:
        """Record the outcome of ``attempt``; False (nothing written) if it is stale."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"finish status must be one of {TERMINAL_STATUSES}, got {status!r}")
        now = utcnow()
        values: dict[str, Any] = {
            "status": status,
            "finished_at": now,
            "updated_at": now,
            "lease_expires_at": None,
            "report_ref": report_ref,
            "html_ref": html_ref,
            "error": dict(error) if error is not None else None,
            "verdict": verdict,
        }
        if status == "succeeded":
            values.update(progress_fraction=1.0, progress_stage="done")
        else:
            values["progress_stage"] = status
        with self._write() as conn:
            res = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.attempt == attempt, jobs.c.status == "running")
                .values(**values)
            )
        return res.rowcount == 1

    # ----- user side ----------------------------------------------------------------------

    def request_cancel(self, job_id: str, *, tenant: str | None) -> JobRecord | None:
        """Cancel: queued -> canceled at once; running -> ``cancel_requested``.

        Returns the updated job, or None if unknown (or another tenant's). Raises
        :class:`JobStateConflict` when the job already finished.
        """
        for _ in range(5):
            job = self.get_job(job_id, tenant=tenant)
            if job is None:
                return None
            if job.is_terminal:
                raise JobStateConflict(job_id, job.status, "cancel")
            if job.status == "running" and job.cancel_requested:
                return job
            now = utcnow()
            with self._write() as conn:
                if job.status == "queued":
                    values: dict[str, Any] = {
                        "status": "canceled",
                        "finished_at": now,
                        "updated_at": now,
                        "cancel_requested": True,
                        "progress_stage": "canceled",
                    }
                else:
                    values = {"cancel_requested": True, "updated_at": now}
                res = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.status == job.status)
                    .values(**values)
                )
            if res.rowcount == 1:
                return self.get_job(job_id, tenant=tenant)
        raise StoreError(f"job {job_id} kept changing state while being canceled")

    def delete_job(self, job_id: str, *, tenant: str | None) -> bool:
        """Delete (tombstone) the job; a queued one is canceled, a running one asked to stop.

        Returns False if the job is unknown, already deleted or another tenant's.
        """
        now = utcnow()
        cond = [jobs.c.id == job_id, jobs.c.deleted_at.is_(None)]
        if tenant is not None:
            cond.append(jobs.c.tenant == tenant)
        with self._write() as conn:
            res = conn.execute(update(jobs).where(*cond).values(deleted_at=now, updated_at=now))
            if res.rowcount != 1:
                return False
            # Free the job's Idempotency-Key: a retry after a delete creates a new job.
            conn.execute(delete(idempotency).where(idempotency.c.job_id == job_id))
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == "queued")
                .values(status="canceled", finished_at=now, cancel_requested=True)
            )
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == "running")
                .values(cancel_requested=True)
            )
        return True

    # ----- janitor ------------------------------------------------------------------------

    def orphaned_jobs(
        self, now: datetime | None = None, *, queued_after_s: float = 600.0
    ) -> list[JobRecord]:
        """Jobs to re-send: running with an expired lease, or queued longer than
        ``queued_after_s`` without any claim (their message was lost)."""
        now = now or utcnow()
        q = select(jobs).where(
            jobs.c.deleted_at.is_(None) | (jobs.c.status == "running"),
            or_(
                and_(jobs.c.status == "running", jobs.c.lease_expires_at < now),
                and_(
                    jobs.c.status == "queued",
                    jobs.c.attempt == 0,
                    jobs.c.created_at < now - timedelta(seconds=queued_after_s),
                ),
            ),
        )
        with self._read() as conn:
            return [
                record_from_row(r) for r in conn.execute(q.order_by(jobs.c.created_at)).mappings()
            ]

    def requeue(self, job_id: str) -> bool:
        """running with an expired lease -> queued. True if the job is now queued (to be sent).

        A job whose cancellation was requested (or that was deleted) becomes canceled instead.
        """
        now = utcnow()
        expired = and_(
            jobs.c.id == job_id, jobs.c.status == "running", jobs.c.lease_expires_at < now
        )
        with self._write() as conn:
            conn.execute(
                update(jobs)
                .where(expired, jobs.c.cancel_requested.is_(True))
                .values(status="canceled", finished_at=now, updated_at=now, lease_expires_at=None)
            )
            conn.execute(
                update(jobs)
                .where(expired)
                .values(
                    status="queued",
                    updated_at=now,
                    lease_expires_at=None,
                    worker_id=None,
                    progress_stage="requeued",
                )
            )
            status = conn.execute(
                select(jobs.c.status).where(jobs.c.id == job_id, jobs.c.deleted_at.is_(None))
            ).scalar_one_or_none()
        return status == "queued"

    def unfinished_counts(self, tenant: str) -> dict[str, int]:
        """``{"queued": n, "running": m}``: the tenant's unfinished jobs (for the tenant quota).

        Deleted jobs that still run count: they hold a worker until they stop.
        """
        q = (
            select(jobs.c.status, func.count())
            .where(jobs.c.tenant == tenant, jobs.c.status.in_(("queued", "running")))
            .group_by(jobs.c.status)
        )
        out = {"queued": 0, "running": 0}
        with self._read() as conn:
            for status, n in conn.execute(q):
                out[status] = int(n)
        return out

    # ----- metrics ------------------------------------------------------------------------

    def counts_by_status(self) -> dict[str, int]:
        """Number of (non-deleted) jobs per status; every status present, zeros included."""
        q = (
            select(jobs.c.status, func.count())
            .where(jobs.c.deleted_at.is_(None))
            .group_by(jobs.c.status)
        )
        out = dict.fromkeys(JOB_STATUSES, 0)
        with self._read() as conn:
            for status, n in conn.execute(q):
                out[status] = int(n)
        return out

    def durations(self, *, limit: int = 10_000) -> list[tuple[str, float]]:
        """(status, seconds from start to finish) of the most recent finished jobs."""
        q = (
            select(jobs.c.status, jobs.c.started_at, jobs.c.finished_at)
            .where(
                jobs.c.status.in_(("succeeded", "failed")),
                jobs.c.started_at.is_not(None),
                jobs.c.finished_at.is_not(None),
            )
            .order_by(jobs.c.finished_at.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [(s, max((f - b).total_seconds(), 0.0)) for s, b, f in conn.execute(q)]

    # ----- API keys -----------------------------------------------------------------------

    def add_api_key(self, *, tenant: str, key_sha256: str) -> None:
        """Store the SHA-256 hex of an API key for ``tenant`` (see service.config.hash_api_key)."""
        with self._write() as conn:
            conn.execute(
                insert(api_keys).values(key_sha256=key_sha256, tenant=tenant, created_at=utcnow())
            )

    def revoke_api_key(self, key_sha256: str) -> bool:
        """Mark a key revoked; True if it existed and was active."""
        with self._write() as conn:
            res = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_sha256 == key_sha256, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return res.rowcount == 1

    def tenant_for_key(self, key_sha256: str) -> str | None:
        """The tenant of an active stored key hash, or None."""
        with self._read() as conn:
            return conn.execute(
                select(api_keys.c.tenant).where(
                    api_keys.c.key_sha256 == key_sha256, api_keys.c.revoked_at.is_(None)
                )
            ).scalar_one_or_none()

    def list_api_keys(self, *, include_revoked: bool = True) -> list[ApiKeyRecord]:
        """Every stored key (hash, tenant, dates), oldest first."""
        q = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_sha256)
        if not include_revoked:
            q = q.where(api_keys.c.revoked_at.is_(None))
        with self._read() as conn:
            return [ApiKeyRecord(**r) for r in conn.execute(q).mappings()]

    def find_api_keys(self, hash_prefix: str) -> list[ApiKeyRecord]:
        """The stored keys whose SHA-256 hex starts with ``hash_prefix`` (lowercase hex)."""
        if not hash_prefix or any(c not in "0123456789abcdef" for c in hash_prefix):
            raise ValueError(f"hash prefix must be lowercase hex digits, got {hash_prefix!r}")
        q = (
            select(api_keys)
            .where(api_keys.c.key_sha256.startswith(hash_prefix))
            .order_by(api_keys.c.created_at, api_keys.c.key_sha256)
        )
        with self._read() as conn:
            return [ApiKeyRecord(**r) for r in conn.execute(q).mappings()]

    def has_api_keys(self) -> bool:
        """True if any key was ever stored, revoked ones included.

        Authentication stays on once a key exists: revoking the last key locks the API (fail
        closed) instead of silently opening it to anonymous callers.
        """
        with self._read() as conn:
            n = conn.execute(select(func.count()).select_from(api_keys)).scalar_one()
        return bool(n)
