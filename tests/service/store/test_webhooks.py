"""Webhook state, delivery log and secrets in the job store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.store.jobs import DeliveryRecord, JobStore, utcnow
from service.store.retention import expire_jobs
from tests.service.conftest import new_job


def _finished(store: JobStore, status: str = "succeeded") -> str:
    job = new_job(store, callback_url="https://hooks.example/x")
    claimed = store.claim(job.id, worker_id="w", lease_s=60)
    assert claimed is not None
    assert store.finish(job.id, attempt=1, status=status)  # type: ignore[arg-type]
    return job.id


def _record(job_id: str, attempt: int, status_code: int | None) -> DeliveryRecord:
    return DeliveryRecord(
        job_id=job_id,
        attempt=attempt,
        event_id=f"msg_{job_id}",
        event_type="certification.succeeded",
        url="https://hooks.example/x",
        attempted_at=utcnow(),
        status_code=status_code,
        error=None if status_code else "connection refused",
        duration_ms=12.5,
        response_prefix="nope",
        succeeded=status_code == 200,
    )


def test_the_event_starts_once_and_only_for_a_finished_job_with_a_callback(
    store: JobStore,
) -> None:
    queued = new_job(store, callback_url="https://hooks.example/x")
    assert not store.mark_webhook_pending(queued.id)  # not finished
    plain = new_job(store)
    store.claim(plain.id, worker_id="w", lease_s=60)
    store.finish(plain.id, attempt=1, status="failed")
    assert not store.mark_webhook_pending(plain.id)  # no callback_url
    job_id = _finished(store)
    assert store.mark_webhook_pending(job_id)
    assert not store.mark_webhook_pending(job_id)
    got = store.get_job(job_id)
    assert got is not None and (got.webhook_status, got.webhook_attempts) == ("pending", 0)


def test_attempts_are_claimed_one_at_a_time_and_logged_in_order(store: JobStore) -> None:
    job_id = _finished(store)
    store.mark_webhook_pending(job_id)
    first = store.claim_webhook_attempt(job_id, hold_s=60, max_attempts=3)
    assert first is not None and first.webhook_attempts == 1
    assert store.claim_webhook_attempt(job_id, hold_s=60, max_attempts=3) is None  # held
    retry_at = utcnow() + timedelta(seconds=30)
    assert store.record_delivery(
        _record(job_id, 1, 500), webhook_status="pending", next_at=retry_at
    )
    assert not store.record_delivery(_record(job_id, 1, 500), webhook_status="pending")  # stale
    assert store.claim_webhook_attempt(job_id, hold_s=60, max_attempts=3) is None  # not due
    second = store.claim_webhook_attempt(
        job_id, hold_s=60, max_attempts=3, now=retry_at + timedelta(seconds=1)
    )
    assert second is not None and second.webhook_attempts == 2
    assert store.record_delivery(_record(job_id, 2, 200), webhook_status="delivered")
    log = store.list_deliveries(job_id)
    assert [(d.attempt, d.status_code, d.succeeded) for d in log] == [
        (1, 500, False),
        (2, 200, True),
    ]
    assert (log[0].error, log[0].response_prefix) == (None, "nope")
    done = store.get_job(job_id)
    assert done is not None and done.webhook_status == "delivered" and done.webhook_next_at is None


def test_an_event_past_its_attempts_becomes_failed(store: JobStore) -> None:
    job_id = _finished(store)
    store.mark_webhook_pending(job_id)
    assert store.claim_webhook_attempt(job_id, hold_s=0, max_attempts=1) is not None
    later = utcnow() + timedelta(seconds=5)
    assert store.claim_webhook_attempt(job_id, hold_s=0, max_attempts=1, now=later) is None
    got = store.get_job(job_id)
    assert got is not None and got.webhook_status == "failed"


def test_due_webhooks_are_unstarted_or_overdue_events(store: JobStore) -> None:
    unstarted = _finished(store, status="canceled")
    overdue = _finished(store)
    store.mark_webhook_pending(overdue)
    held = _finished(store)
    store.mark_webhook_pending(held)
    store.claim_webhook_attempt(held, hold_s=3600, max_attempts=3)
    new_job(store, callback_url="https://hooks.example/x")  # still queued
    later = utcnow() + timedelta(seconds=120)
    assert set(store.due_webhooks(later, grace_s=60)) == {unstarted, overdue}
    assert store.due_webhooks(utcnow(), grace_s=60) == []


def test_a_tenant_secret_is_made_once_and_rotation_replaces_it(store: JobStore) -> None:
    a = store.webhook_secret("t1")
    assert a.secret.startswith("whsec_") and store.webhook_secret("t1") == a
    assert store.webhook_secret("t2").secret != a.secret
    rotated = store.rotate_webhook_secret("t1")
    assert rotated.secret != a.secret and store.webhook_secret("t1") == rotated


def test_the_delivery_log_goes_with_an_expired_job(store: JobStore, tmp_path: object) -> None:
    from pathlib import Path

    from service.store.artifacts import ArtifactStore

    job_id = _finished(store)
    store.mark_webhook_pending(job_id)
    store.claim_webhook_attempt(job_id, hold_s=60, max_attempts=3)
    store.record_delivery(_record(job_id, 1, 200), webhook_status="delivered")
    artifacts = ArtifactStore(Path(str(tmp_path)) / "artifacts")
    expire_jobs(store, artifacts, retention_days=1, now=utcnow() + timedelta(days=2))
    assert store.list_deliveries(job_id) == []


@pytest.mark.parametrize("status", ["succeeded", "failed", "canceled"])
def test_every_terminal_status_starts_an_event(store: JobStore, status: str) -> None:
    assert store.mark_webhook_pending(_finished(store, status=status))
