"""Retention: finished jobs older than PLCERT_RETENTION_DAYS go with their unshared files; live
and recent jobs, and files they share, stay (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from service.config import ConfigError
from service.store import retention
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobRecord, JobStore, utcnow
from service.store.models import idempotency, jobs
from service.store.retention import expire_jobs, plan_expiry, retention_cutoff
from tests.service.conftest import make_settings, new_job

DAYS = 30.0


def _job(store: JobStore, artifacts: ArtifactStore, model: bytes, data: bytes, **kw: Any) -> Any:
    return new_job(
        store,
        model_ref=artifacts.put(model, suffix=".json"),
        data_ref=artifacts.put(data, suffix=".npz"),
        **kw,
    )


def _finish(store: JobStore, artifacts: ArtifactStore, job: JobRecord, report: bytes) -> str:
    claimed = store.claim(job.id, worker_id="w", lease_s=60)
    assert claimed is not None
    ref = artifacts.put(report, suffix=".json")
    assert store.finish(job.id, attempt=claimed.attempt, status="succeeded", report_ref=ref)
    return ref


def _rows(store: JobStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())


def test_finished_jobs_past_retention_go_with_their_unshared_files(
    store: JobStore, tmp_path: Path
) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    old = _job(store, artifacts, b"shared model", b"old data")
    old_report = _finish(store, artifacts, old, b"old report")
    live = _job(store, artifacts, b"shared model", b"live data")  # queued, shares the model
    recent = _job(store, artifacts, b"recent model", b"recent data")
    _finish(store, artifacts, recent, b"recent report")
    later = utcnow() + timedelta(days=DAYS, hours=1)  # `old` and `recent` finished now

    # Just inside the retention period nothing is due.
    assert expire_jobs(store, artifacts, retention_days=DAYS + 1, now=later).jobs == []
    # Only the old job is due when the recent one is moved forward in time.
    with store.engine.begin() as conn:
        conn.execute(
            jobs.update().where(jobs.c.id == recent.id).values(finished_at=later - timedelta(1))
        )
    plan = plan_expiry(store, artifacts, retention_days=DAYS, now=later)
    assert [j.id for j in plan.jobs] == [old.id] and plan.dry_run
    assert sorted(plan.files) == sorted([old.data_ref, old_report])
    assert store.get_job(old.id) is not None and artifacts.exists(old.data_ref)  # dry run

    result = expire_jobs(store, artifacts, retention_days=DAYS, now=later)
    assert [j.id for j in result.jobs] == [old.id]
    assert sorted(result.files) == sorted(plan.files)
    assert result.rows_deleted == 1 and _rows(store) == 2
    assert store.get_job(old.id) is None
    assert not artifacts.exists(old.data_ref) and not artifacts.exists(old_report)
    assert artifacts.exists(live.model_ref)  # shared with a live job
    for job in (live, recent):
        assert store.get_job(job.id) is not None
        assert artifacts.exists(job.data_ref)
    # Idempotent: a second pass has nothing to do.
    again = expire_jobs(store, artifacts, retention_days=DAYS, now=later)
    assert again.jobs == [] and again.files == [] and again.rows_deleted == 0


def test_every_terminal_status_expires_and_unfinished_jobs_never_do(
    store: JobStore, tmp_path: Path
) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    queued = _job(store, artifacts, b"m", b"queued")
    running = _job(store, artifacts, b"m", b"running")
    assert store.claim(running.id, worker_id="w", lease_s=600) is not None
    canceled = _job(store, artifacts, b"m", b"canceled")
    store.request_cancel(canceled.id, tenant="t1")
    failed = _job(store, artifacts, b"m", b"failed")
    claimed = store.claim(failed.id, worker_id="w", lease_s=60)
    assert claimed is not None
    assert store.finish(failed.id, attempt=1, status="failed", error={"type": "x"})
    later = utcnow() + timedelta(days=DAYS + 1)
    result = expire_jobs(store, artifacts, retention_days=DAYS, now=later)
    assert {j.id for j in result.jobs} == {canceled.id, failed.id}
    assert {j.status for j in result.jobs} == {"canceled", "failed"}
    assert sorted(result.files) == sorted([canceled.data_ref, failed.data_ref])
    assert artifacts.exists(queued.model_ref)  # the model is shared by the live jobs
    assert store.get_job(queued.id) is not None and store.get_job(running.id) is not None


def test_expiry_frees_the_idempotency_key_and_drops_old_tombstones(
    store: JobStore, tmp_path: Path
) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    job, created = store.create_job_idempotent(
        idempotency_key="k",
        body_sha256="h" * 64,
        tenant="t1",
        model_ref=artifacts.put(b"m", suffix=".json"),
        data_ref=artifacts.put(b"d", suffix=".npz"),
        options={},
        model_format="json",
        data_format="npz",
        queue="cpu",
    )
    assert created
    _finish(store, artifacts, job, b"r")
    deleted = _job(store, artifacts, b"m2", b"d2")
    assert store.delete_job(deleted.id, tenant="t1")  # a user's delete: a tombstone row
    later = utcnow() + timedelta(days=DAYS + 1)
    result = expire_jobs(store, artifacts, retention_days=DAYS, now=later)
    assert [j.id for j in result.jobs] == [job.id]
    assert result.rows_deleted == 2 and _rows(store) == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(idempotency)).scalar_one() == 0
    assert not any(p.is_file() for p in (tmp_path / "artifacts").rglob("*"))


def test_a_backlog_larger_than_a_batch_is_worked_off_in_one_call(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH", 2)
    artifacts = ArtifactStore(tmp_path / "artifacts")
    done = [_job(store, artifacts, b"m", f"d{i}".encode()) for i in range(5)]
    for job in done:
        _finish(store, artifacts, job, f"r{job.id}".encode())
    live = _job(store, artifacts, b"m", b"live")
    later = utcnow() + timedelta(days=DAYS + 1)
    assert len(plan_expiry(store, artifacts, retention_days=DAYS, now=later).files) == 10
    result = expire_jobs(store, artifacts, retention_days=DAYS, now=later)
    assert sorted(j.id for j in result.jobs) == sorted(j.id for j in done)
    assert len(result.files) == 10 and result.rows_deleted == 5 and _rows(store) == 1
    assert artifacts.exists(live.model_ref) and artifacts.exists(live.data_ref)


def test_zero_days_keeps_everything(store: JobStore, tmp_path: Path) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    job = _job(store, artifacts, b"m", b"d")
    _finish(store, artifacts, job, b"r")
    far = utcnow() + timedelta(days=10_000)
    assert retention_cutoff(0, far) is None
    assert expire_jobs(store, artifacts, retention_days=0, now=far).jobs == []
    assert plan_expiry(store, artifacts, retention_days=0, now=far).jobs == []
    assert store.get_job(job.id) is not None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("retention_days", -1),
        ("retention_days", "inf"),
        ("retention_days", 1e9),
        ("max_queued_per_tenant", -1),
        ("max_running_per_tenant", "many"),
        ("rate_limit", -5),
    ],
)
def test_bad_tenancy_settings_are_refused(name: str, value: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=name):
        make_settings(tmp_path, **{name: value})
