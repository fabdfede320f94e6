"""Retention: finished jobs expire ``PLCERT_RETENTION_DAYS`` days after they finished.

An expired job is a terminal job (succeeded, failed, canceled) whose ``finished_at`` is older
than the cutoff. :func:`expire_jobs` deletes it the way ``DELETE /v1/certifications/{id}``
does (a tombstone, its Idempotency-Key freed), removes its files with the reference counting of
:mod:`service.store.purge` (a file that a kept job shares, a live one in particular, stays),
and then drops the rows of expired and long-deleted jobs whose files are gone: a finished job
cannot be written again by a late worker (every worker write is a CAS on ``running``), so its
tombstone is no longer needed.

The janitor (``worker.janitor``) runs it periodically; ``plcert gc`` runs it on demand, and
``plcert gc --dry-run`` lists what it would remove (:func:`plan_expiry`) without writing.
``retention_days == 0`` keeps everything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Select, and_, delete, not_, or_, select, update

from service.store.artifacts import ArtifactStore
from service.store.jobs import JobStore
from service.store.models import TERMINAL_STATUSES, idempotency, jobs
from service.store.purge import REF_COLUMNS, purge_batch
from service.store.records import utcnow

log = logging.getLogger("plcert.store.retention")

BATCH = 500
"""Jobs expired per transaction (a large backlog is worked off in several)."""


@dataclass(frozen=True)
class ExpiredJob:
    """A job removed (or, in a dry run, to be removed) by retention."""

    id: str
    tenant: str
    status: str
    finished_at: datetime


@dataclass
class RetentionResult:
    """What one retention pass removed (or would remove, with ``dry_run``)."""

    cutoff: datetime | None
    dry_run: bool
    jobs: list[ExpiredJob] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    """Refs of the files removed; in a dry run, of those that would be."""
    rows_deleted: int = 0


def retention_cutoff(retention_days: float, now: datetime | None = None) -> datetime | None:
    """Jobs that finished before this instant expire; None when retention is off (0 days)."""
    if retention_days <= 0:
        return None
    return (now or utcnow()) - timedelta(days=retention_days)


def _expired(cutoff: datetime) -> ColumnElement[bool]:
    """Jobs due for expiry: terminal, not deleted, finished before ``cutoff``."""
    return and_(
        jobs.c.deleted_at.is_(None),
        jobs.c.status.in_(TERMINAL_STATUSES),
        jobs.c.finished_at < cutoff,
    )


def _expired_query(cutoff: datetime) -> Select[tuple[str, str, str, datetime]]:
    return (
        select(jobs.c.id, jobs.c.tenant, jobs.c.status, jobs.c.finished_at)
        .where(_expired(cutoff))
        .order_by(jobs.c.finished_at, jobs.c.id)
    )


def _files_only_expired_jobs_use(
    conn: Connection, artifacts: ArtifactStore, cutoff: datetime
) -> list[str]:
    """Refs of the files of the expiring jobs that no kept job (one whose files are not
    purged and that does not expire) refers to."""
    refs: set[str] = set()
    for row in conn.execute(select(*(jobs.c[col] for col in REF_COLUMNS)).where(_expired(cutoff))):
        refs.update(r for r in row if r)
    out = []
    for ref in sorted(refs):
        kept_by = conn.execute(
            select(jobs.c.id)
            .where(
                or_(jobs.c.finished_at.is_(None), not_(_expired(cutoff))),  # NULL-safe
                jobs.c.artifacts_purged_at.is_(None),
                or_(*(jobs.c[col] == ref for col in REF_COLUMNS)),
            )
            .limit(1)
        ).first()
        if kept_by is None and artifacts.exists(ref):
            out.append(ref)
    return out


def plan_expiry(
    store: JobStore,
    artifacts: ArtifactStore,
    *,
    retention_days: float,
    now: datetime | None = None,
) -> RetentionResult:
    """What :func:`expire_jobs` would remove at ``now``, without writing anything.

    The files listed are those of the expiring jobs that no kept job shares; files of jobs
    deleted by their owner and not yet purged are not listed (the janitor removes them anyway).
    """
    cutoff = retention_cutoff(retention_days, now)
    result = RetentionResult(cutoff=cutoff, dry_run=True)
    if cutoff is None:
        return result
    with store.engine.connect() as conn:
        rows = conn.execute(_expired_query(cutoff)).all()
        result.jobs = [ExpiredJob(r.id, r.tenant, r.status, r.finished_at) for r in rows]
        result.files = _files_only_expired_jobs_use(conn, artifacts, cutoff)
    return result


def _drop_purged_rows(store: JobStore, gone: ColumnElement[bool]) -> int:
    """Delete the rows (and Idempotency-Keys) of deleted, finished, purged jobs matching
    ``gone``; returns how many rows went."""
    done = (
        select(jobs.c.id)
        .where(
            gone,
            jobs.c.deleted_at.is_not(None),
            jobs.c.status.in_(TERMINAL_STATUSES),
            jobs.c.artifacts_purged_at.is_not(None),
        )
        .scalar_subquery()
    )
    with store.engine.begin() as conn:
        conn.execute(delete(idempotency).where(idempotency.c.job_id.in_(done)))
        return int(conn.execute(delete(jobs).where(jobs.c.id.in_(done))).rowcount)


def expire_jobs(
    store: JobStore,
    artifacts: ArtifactStore,
    *,
    retention_days: float,
    now: datetime | None = None,
) -> RetentionResult:
    """Delete the jobs that finished before the retention cutoff, with their unshared files,
    and drop the rows of deleted jobs whose files are gone (the module docstring).

    Works in batches of :data:`BATCH` jobs: tombstone them, purge their files, drop their rows.
    """
    now = now or utcnow()
    cutoff = retention_cutoff(retention_days, now)
    result = RetentionResult(cutoff=cutoff, dry_run=False)
    if cutoff is None:
        return result
    while True:
        with store.engine.begin() as conn:
            rows = conn.execute(_expired_query(cutoff).limit(BATCH)).all()
            ids = [r.id for r in rows]
            if ids:
                # A finished job cannot change state any more, but its owner may delete it
                # meanwhile (then it is purged as a deleted job): only untouched rows move.
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(ids), jobs.c.deleted_at.is_(None))
                    .values(deleted_at=now, updated_at=now)
                )
                conn.execute(delete(idempotency).where(idempotency.c.job_id.in_(ids)))
        result.jobs += [ExpiredJob(r.id, r.tenant, r.status, r.finished_at) for r in rows]
        while True:
            n, removed = purge_batch(store, artifacts, limit=BATCH)
            result.files += removed
            if n == 0:
                break
        if ids:
            result.rows_deleted += _drop_purged_rows(store, jobs.c.id.in_(ids))
        if len(rows) < BATCH:
            break
    # Tombstones of jobs their owners deleted more than the retention period ago.
    result.rows_deleted += _drop_purged_rows(store, jobs.c.deleted_at < cutoff)
    if result.jobs or result.rows_deleted:
        log.info(
            "retention (%g days): expired %d jobs, removed %d files, dropped %d rows",
            retention_days,
            len(result.jobs),
            len(result.files),
            result.rows_deleted,
        )
    return result
