"""The study store: width studies and their points, in the job store's database.

A study is split into points (one per width or depth and seed). Each point is computed by one
Celery task, and the task that sees the last point finish sends the final task that assembles
the result. Every state change is a compare-and-set ``UPDATE ... WHERE``:

::

    study:  queued --first point claimed--> running --finish--> succeeded | failed | canceled
    point:  queued --claim (attempt += 1)--> running --finish_point--> succeeded | failed
            queued --cancel--> canceled;  running past ``stale_after_s`` --> re-claimable

``finishing`` is set by exactly one assembling task (:meth:`StudyStore.claim_finish`). Deleted
studies are tombstones (``deleted_at``) that no read returns; their points are canceled.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping

from service.store.models import TERMINAL_STATUSES, studies, study_points
from service.store.records import JobStateConflict, utcnow


@dataclass(frozen=True)
class StudyRecord:
    """One stored study (``values``: the widths of a width study, the depths of a depth study;
    ``fixed``: the other size, or None for the base spec's)."""

    id: str
    tenant: str
    status: str
    kind: str
    mode: str
    spec: dict[str, Any]
    values: list[int]
    seeds: list[int]
    fixed: int | None
    options: dict[str, Any]
    data_ref: str
    data_format: str
    queue: str
    n_points: int
    cancel_requested: bool
    finishing: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: dict[str, Any] | None
    result_ref: str | None
    html_ref: str | None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class PointRecord:
    """One point of a study: its size, seed, state and, once succeeded, its row (JSON)."""

    study_id: str
    idx: int
    width: int
    depth: int | None
    seed: int
    status: str
    attempt: int
    worker_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    row: dict[str, Any] | None
    error: dict[str, Any] | None


_STUDY_FIELDS = tuple(StudyRecord.__dataclass_fields__)
_POINT_FIELDS = tuple(PointRecord.__dataclass_fields__)


def _study(row: RowMapping | Mapping[str, Any]) -> StudyRecord:
    return StudyRecord(**{f: row[f] for f in _STUDY_FIELDS})


def _point(row: RowMapping | Mapping[str, Any]) -> PointRecord:
    return PointRecord(**{f: row[f] for f in _POINT_FIELDS})


class StudyStore:
    """Studies and points on ``engine`` (the job store's: ``StudyStore(job_store.engine)``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ----- creation and reads ---------------------------------------------------------------

    def create(
        self,
        *,
        tenant: str,
        kind: str,
        mode: str,
        spec: Mapping[str, Any],
        values: Sequence[int],
        seeds: Sequence[int],
        fixed: int | None,
        options: Mapping[str, Any],
        data_ref: str,
        data_format: str,
        queue: str,
        points: Sequence[tuple[int, int | None, int]],
    ) -> StudyRecord:
        """Insert a queued study and its queued points (``(width, depth, seed)`` each)."""
        now = utcnow()
        sid = uuid.uuid4().hex
        with self._write() as conn:
            conn.execute(
                insert(studies).values(
                    id=sid,
                    tenant=tenant,
                    status="queued",
                    kind=kind,
                    mode=mode,
                    spec=dict(spec),
                    values=list(values),
                    seeds=list(seeds),
                    fixed=fixed,
                    options=dict(options),
                    data_ref=data_ref,
                    data_format=data_format,
                    queue=queue,
                    n_points=len(points),
                    cancel_requested=False,
                    finishing=False,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(study_points),
                [
                    {
                        "study_id": sid,
                        "idx": i,
                        "width": w,
                        "depth": d,
                        "seed": s,
                        "status": "queued",
                        "attempt": 0,
                    }
                    for i, (w, d, s) in enumerate(points)
                ],
            )
            row = conn.execute(select(studies).where(studies.c.id == sid)).mappings().one()
        return _study(row)

    def get(self, study_id: str, *, tenant: str | None = None) -> StudyRecord | None:
        """The study, or None if unknown, deleted or another tenant's."""
        q = select(studies).where(studies.c.id == study_id, studies.c.deleted_at.is_(None))
        if tenant is not None:
            q = q.where(studies.c.tenant == tenant)
        with self._read() as conn:
            row = conn.execute(q).mappings().first()
        return _study(row) if row is not None else None

    def points(self, study_id: str) -> list[PointRecord]:
        q = select(study_points).where(study_points.c.study_id == study_id)
        with self._read() as conn:
            return [_point(r) for r in conn.execute(q.order_by(study_points.c.idx)).mappings()]

    def point_counts(self, study_id: str) -> dict[str, int]:
        """Points per status (every status present)."""
        q = (
            select(study_points.c.status, func.count())
            .where(study_points.c.study_id == study_id)
            .group_by(study_points.c.status)
        )
        out = dict.fromkeys(("queued", "running", "succeeded", "failed", "canceled"), 0)
        with self._read() as conn:
            for status, n in conn.execute(q):
                out[status] = int(n)
        return out

    # ----- worker side ------------------------------------------------------------------------

    def claim_point(
        self, study_id: str, idx: int, *, worker_id: str, stale_after_s: float
    ) -> tuple[StudyRecord, PointRecord] | None:
        """Take a point: queued (or running for longer than ``stale_after_s``, its worker gone)
        -> running, attempt + 1; the study becomes running. None when the point is done, held,
        or its study canceled or deleted."""
        now = utcnow()
        live = and_(
            studies.c.id == study_id,
            studies.c.deleted_at.is_(None),
            studies.c.cancel_requested.is_(False),
            studies.c.status.in_(("queued", "running")),
        )
        with self._write() as conn:
            if conn.execute(select(studies.c.id).where(live)).first() is None:
                return None
            res = conn.execute(
                update(study_points)
                .where(
                    study_points.c.study_id == study_id,
                    study_points.c.idx == idx,
                    or_(
                        study_points.c.status == "queued",
                        and_(
                            study_points.c.status == "running",
                            study_points.c.started_at < now - timedelta(seconds=stale_after_s),
                        ),
                    ),
                )
                .values(
                    status="running",
                    attempt=study_points.c.attempt + 1,
                    worker_id=worker_id,
                    started_at=now,
                )
            )
            if res.rowcount != 1:
                return None
            conn.execute(
                update(studies)
                .where(studies.c.id == study_id, studies.c.status == "queued")
                .values(status="running", started_at=now, updated_at=now)
            )
            s = conn.execute(select(studies).where(studies.c.id == study_id)).mappings().one()
            p = (
                conn.execute(
                    select(study_points).where(
                        study_points.c.study_id == study_id, study_points.c.idx == idx
                    )
                )
                .mappings()
                .one()
            )
        return _study(s), _point(p)

    def finish_point(
        self,
        study_id: str,
        idx: int,
        *,
        attempt: int,
        status: str,
        row: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record the outcome of ``attempt`` of a point; False (nothing written) if stale."""
        if status not in ("succeeded", "failed", "canceled"):
            raise ValueError(f"point status must be final, got {status!r}")
        with self._write() as conn:
            res = conn.execute(
                update(study_points)
                .where(
                    study_points.c.study_id == study_id,
                    study_points.c.idx == idx,
                    study_points.c.attempt == attempt,
                    study_points.c.status == "running",
                )
                .values(
                    status=status,
                    finished_at=utcnow(),
                    row=dict(row) if row is not None else None,
                    error=dict(error) if error is not None else None,
                )
            )
        return res.rowcount == 1

    def cancel_requested(self, study_id: str) -> bool:
        """True once a cancel (or delete) was asked for the study, or it is gone."""
        with self._read() as conn:
            flag = conn.execute(
                select(studies.c.cancel_requested).where(studies.c.id == study_id)
            ).scalar_one_or_none()
        return flag is None or bool(flag)

    def claim_finish(self, study_id: str) -> bool:
        """True for exactly one caller, once no point is queued or running: that caller
        assembles the result and calls :meth:`finish`."""
        pending = (
            select(func.count())
            .select_from(study_points)
            .where(
                study_points.c.study_id == study_id,
                study_points.c.status.in_(("queued", "running")),
            )
            .scalar_subquery()
        )
        with self._write() as conn:
            res = conn.execute(
                update(studies)
                .where(
                    studies.c.id == study_id,
                    studies.c.finishing.is_(False),
                    studies.c.status.in_(("queued", "running")),
                    pending == 0,
                )
                .values(finishing=True, updated_at=utcnow())
            )
        return res.rowcount == 1

    def finish(
        self,
        study_id: str,
        *,
        status: str,
        result_ref: str | None = None,
        html_ref: str | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> bool:
        """The study's outcome (after :meth:`claim_finish`, or a cancel); False if it had
        already finished."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"study status must be final, got {status!r}")
        now = utcnow()
        with self._write() as conn:
            res = conn.execute(
                update(studies)
                .where(studies.c.id == study_id, studies.c.status.in_(("queued", "running")))
                .values(
                    status=status,
                    finished_at=now,
                    updated_at=now,
                    result_ref=result_ref,
                    html_ref=html_ref,
                    error=dict(error) if error is not None else None,
                )
            )
        return res.rowcount == 1

    # ----- user side --------------------------------------------------------------------------

    def request_cancel(self, study_id: str, *, tenant: str | None) -> StudyRecord | None:
        """Cancel: queued points are canceled at once, running ones stop at their next check;
        the study is canceled when no point runs any more (here, or by the last point's task).
        None if unknown; :class:`JobStateConflict` when it already finished."""
        study = self.get(study_id, tenant=tenant)
        if study is None:
            return None
        if study.is_terminal:
            raise JobStateConflict(study_id, study.status, "cancel")
        now = utcnow()
        with self._write() as conn:
            conn.execute(
                update(studies)
                .where(studies.c.id == study_id)
                .values(cancel_requested=True, updated_at=now)
            )
            conn.execute(
                update(study_points)
                .where(study_points.c.study_id == study_id, study_points.c.status == "queued")
                .values(status="canceled", finished_at=now)
            )
        if self.claim_finish(study_id):
            self.finish(study_id, status="canceled")
        return self.get(study_id, tenant=tenant)

    def delete(self, study_id: str, *, tenant: str | None) -> bool:
        """Tombstone the study (a running one is asked to stop); False if unknown."""
        cond = [studies.c.id == study_id, studies.c.deleted_at.is_(None)]
        if tenant is not None:
            cond.append(studies.c.tenant == tenant)
        now = utcnow()
        with self._write() as conn:
            res = conn.execute(
                update(studies)
                .where(*cond)
                .values(deleted_at=now, updated_at=now, cancel_requested=True)
            )
            if res.rowcount != 1:
                return False
            conn.execute(
                update(study_points)
                .where(study_points.c.study_id == study_id, study_points.c.status == "queued")
                .values(status="canceled", finished_at=now)
            )
        return True
