"""Deleting a job removes its files, except those that another kept job shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plcore.options import CertifyOptions
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobStore
from service.store.purge import purge_deleted_artifacts
from service.submission import Submission, store_submission
from tests.service.conftest import new_job


def _job_files(artifacts: ArtifactStore, store: JobStore, model: bytes, data: bytes) -> Any:
    return new_job(
        store,
        model_ref=artifacts.put(model, suffix=".json"),
        data_ref=artifacts.put(data, suffix=".npz"),
    )


def test_a_deleted_job_keeps_only_the_files_another_job_shares(
    store: JobStore, tmp_path: Path
) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    a = _job_files(artifacts, store, b"shared model", b"data of a")
    b = _job_files(artifacts, store, b"shared model", b"data of b")
    assert store.delete_job(a.id, tenant="t1")
    assert purge_deleted_artifacts(store, artifacts) == 1
    assert artifacts.exists(a.model_ref) and not artifacts.exists(a.data_ref)
    assert artifacts.exists(b.data_ref)
    assert purge_deleted_artifacts(store, artifacts) == 0  # a job is purged once
    assert store.delete_job(b.id, tenant="t1")
    assert purge_deleted_artifacts(store, artifacts) == 2
    assert not any(p.is_file() for p in (tmp_path / "artifacts").rglob("*"))


def test_a_job_deleted_while_running_loses_its_files_and_report_once_it_stopped(
    store: JobStore, tmp_path: Path
) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    job = _job_files(artifacts, store, b"model", b"data")
    claimed = store.claim(job.id, worker_id="w", lease_s=30)
    assert claimed is not None
    assert store.delete_job(job.id, tenant="t1")
    assert purge_deleted_artifacts(store, artifacts) == 0  # the worker still reads them
    assert artifacts.exists(job.model_ref)
    report = artifacts.put(b"{}", suffix=".json")
    assert store.finish(job.id, attempt=claimed.attempt, status="canceled", report_ref=report)
    assert purge_deleted_artifacts(store, artifacts) == 3
    assert not artifacts.exists(report) and not artifacts.exists(job.data_ref)


def test_a_submission_racing_a_purge_still_has_its_files(store: JobStore, tmp_path: Path) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    old = _job_files(artifacts, store, b'{"m": 1}', b"same data")
    assert store.delete_job(old.id, tenant="t1")
    create_job = store.create_job

    def purge_then_create(**kw: Any) -> Any:
        # the purge runs between the submission's put and its insert
        assert purge_deleted_artifacts(store, artifacts) == 2
        return create_job(**kw)

    store.create_job = purge_then_create  # type: ignore[method-assign]
    sub = Submission(
        model=b'{"m": 1}',
        model_format="json",
        data=b"same data",
        data_format="npz",
        weights=None,
        options=CertifyOptions(),
    )
    job, created = store_submission(
        sub,
        tenant="t1",
        queue="cpu",
        store=store,
        artifacts=artifacts,
        idempotency_key=None,
        body_sha256="0" * 64,
    )
    assert created and job.model_ref == old.model_ref
    assert (
        artifacts.get(job.model_ref) == b'{"m": 1}' and artifacts.get(job.data_ref) == b"same data"
    )
