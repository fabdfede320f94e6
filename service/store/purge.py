"""Removing the files of deleted jobs, with reference counting.

Artifacts are content-addressed (``service.store.artifacts``): two jobs that upload the same
bytes, or produce the same report, share one file. When a job is deleted, each of its refs
(model, data, weights, report, HTML report) is removed only if no other job whose files are
still kept refers to it. A job is purged once it is deleted *and* finished: a deleted running
job is asked to stop, and its files (and the report it may still write) go after it finished.

Concurrency with a submission that reuses a file: the submitter stores the file, then inserts its
job, then checks that its files still exist and writes any that a purge removed in between
(``service.submission.store_submission``). The purge counts references and unlinks inside one
write transaction that excludes concurrent job inserts (SQLite ``BEGIN IMMEDIATE``; on
PostgreSQL a ``SHARE ROW EXCLUSIVE`` table lock), so either the purge sees the new job, or the
new job's check runs after the unlink.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, or_, select, update

from service.store.artifacts import ArtifactStore
from service.store.jobs import JobStore
from service.store.models import TERMINAL_STATUSES, jobs
from service.store.records import utcnow

log = logging.getLogger("plcert.store.purge")

REF_COLUMNS = ("model_ref", "data_ref", "weights_ref", "report_ref", "html_ref")


def _still_used(conn: Connection, ref: str, job_id: str) -> bool:
    q = select(jobs.c.id).where(
        jobs.c.id != job_id,
        jobs.c.artifacts_purged_at.is_(None),
        or_(*(jobs.c[col] == ref for col in REF_COLUMNS)),
    )
    return conn.execute(q.limit(1)).first() is not None


def purge_deleted_artifacts(store: JobStore, artifacts: ArtifactStore, *, limit: int = 100) -> int:
    """Remove the unshared files of up to ``limit`` deleted, finished jobs; returns how many
    files were removed (see the module docstring)."""
    return len(purge_batch(store, artifacts, limit=limit)[1])


def purge_batch(
    store: JobStore, artifacts: ArtifactStore, *, limit: int = 100
) -> tuple[int, list[str]]:
    """:func:`purge_deleted_artifacts` that also tells how many jobs it purged (0: none was
    left) and which files it removed."""
    removed: list[str] = []
    now = utcnow()
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
        candidates = conn.execute(
            select(jobs.c.id, *(jobs.c[col] for col in REF_COLUMNS))
            .where(
                jobs.c.deleted_at.is_not(None),
                jobs.c.status.in_(TERMINAL_STATUSES),
                jobs.c.artifacts_purged_at.is_(None),
            )
            .limit(limit)
        ).all()
        for row in candidates:
            job_id = row[0]
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(artifacts_purged_at=now))
            for ref in sorted({r for r in row[1:] if r}):
                if not _still_used(conn, ref, job_id) and artifacts.delete(ref):
                    removed.append(ref)
    if candidates:
        log.info("purged %d files of %d deleted jobs", len(removed), len(candidates))
    return len(candidates), removed
