"""The job store's part for comparisons: a comparison row and its member jobs, made together.

A comparison names its members (ordinary certification jobs of the same tenant, in submission
order); their states and reports are the comparison's state, read when it is shown.
:class:`JobStore` includes these methods (:class:`ComparisonRecords`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from service.store.models import comparisons
from service.store.records import JobRecord, utcnow


@dataclass(frozen=True)
class ComparisonRecord:
    """A stored comparison: ``members`` are ``{"job_id", "name", "model_sha256"}`` dicts."""

    id: str
    tenant: str
    created_at: datetime
    members: list[dict[str, Any]]
    data_name: str

    @property
    def job_ids(self) -> list[str]:
        """The member jobs' ids, in submission order."""
        return [str(m["job_id"]) for m in self.members]


class ComparisonRecords:
    """Comparison methods of :class:`service.store.jobs.JobStore`."""

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _insert_job(self, conn: Connection, **values: Any) -> JobRecord:
        raise NotImplementedError

    def create_comparison(
        self,
        *,
        tenant: str,
        data_name: str,
        jobs: Sequence[Mapping[str, Any]],
        names: Sequence[str],
        model_sha256s: Sequence[str],
    ) -> tuple[ComparisonRecord, list[JobRecord]]:
        """Insert one queued job per entry of ``jobs`` (the ``create_job`` fields, tenant
        included) and the comparison naming them, in one transaction."""
        if not len(jobs) == len(names) == len(model_sha256s):
            raise ValueError("jobs, names and model_sha256s must have one entry per model")
        with self._write() as conn:
            records = [self._insert_job(conn, tenant=tenant, **job) for job in jobs]
            row: dict[str, Any] = {
                "id": uuid.uuid4().hex,
                "tenant": tenant,
                "created_at": utcnow(),
                "data_name": data_name[:200],
                "members": [
                    {"job_id": r.id, "name": n, "model_sha256": h}
                    for r, n, h in zip(records, names, model_sha256s, strict=True)
                ],
            }
            conn.execute(insert(comparisons).values(**row))
        return ComparisonRecord(**row), records

    def get_comparison(self, comparison_id: str, *, tenant: str) -> ComparisonRecord | None:
        """The comparison, or None if unknown or another tenant's."""
        q = select(comparisons).where(
            comparisons.c.id == comparison_id, comparisons.c.tenant == tenant
        )
        with self._read() as conn:
            row = conn.execute(q).mappings().first()
        return ComparisonRecord(**row) if row is not None else None
