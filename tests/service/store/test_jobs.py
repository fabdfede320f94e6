"""JobStore on real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from service.store.jobs import (
    IdempotencyConflict,
    InvalidCursor,
    JobStateConflict,
    JobStore,
    decode_cursor,
    encode_cursor,
    utcnow,
)
from tests.service.conftest import new_job

JOB = {
    "tenant": "t1",
    "model_ref": "a" * 64 + ".json",
    "data_ref": "b" * 64 + ".npz",
    "options": {"budget": "fast"},
    "model_format": "json",
    "data_format": "npz",
    "queue": "cpu",
}


def test_created_job_is_queued_with_attempt_zero(store: JobStore) -> None:
    job = new_job(store, weights_ref="c" * 64 + ".weights")
    got = store.get_job(job.id)
    assert got is not None
    assert (got.status, got.attempt, got.options) == ("queued", 0, {"budget": "fast"})
    assert got.weights_ref == "c" * 64 + ".weights"
    assert got.created_at.tzinfo is not None


def test_get_job_filters_by_tenant(store: JobStore) -> None:
    job = new_job(store, tenant="a")
    assert store.get_job(job.id, tenant="a") is not None
    assert store.get_job(job.id, tenant="b") is None
    assert store.get_job(job.id) is not None


def test_second_claim_of_a_live_job_gets_nothing(store: JobStore) -> None:
    job = new_job(store)
    first = store.claim(job.id, worker_id="w1", lease_s=60)
    assert first is not None and first.status == "running" and first.attempt == 1
    assert store.claim(job.id, worker_id="w2", lease_s=60) is None


def test_claim_after_lease_expiry_increments_attempt_and_stale_finish_is_rejected(
    store: JobStore,
) -> None:
    job = new_job(store)
    first = store.claim(job.id, worker_id="w1", lease_s=0.0)
    assert first is not None
    second = store.claim(job.id, worker_id="w2", lease_s=60)
    assert second is not None and second.attempt == 2 and second.worker_id == "w2"
    assert not store.finish(job.id, attempt=1, status="succeeded")
    assert not store.heartbeat(job.id, attempt=1, lease_s=60).ok
    assert store.finish(job.id, attempt=2, status="succeeded", verdict="certified")
    done = store.get_job(job.id)
    assert done is not None and (done.status, done.verdict, done.worker_id) == (
        "succeeded",
        "certified",
        "w2",
    )


def test_finish_twice_is_rejected_the_second_time(store: JobStore) -> None:
    job = new_job(store)
    store.claim(job.id, worker_id="w", lease_s=60)
    assert store.finish(
        job.id, attempt=1, status="failed", error={"type": "x", "title": "t", "detail": "d"}
    )
    assert not store.finish(job.id, attempt=1, status="succeeded")
    got = store.get_job(job.id)
    assert (
        got is not None
        and got.status == "failed"
        and got.error
        == {
            "type": "x",
            "title": "t",
            "detail": "d",
        }
    )


def test_finish_with_non_final_status_raises(store: JobStore) -> None:
    job = new_job(store)
    with pytest.raises(ValueError, match="finish status must be one of"):
        store.finish(job.id, attempt=0, status="running")  # type: ignore[arg-type]


def test_heartbeat_records_progress_and_reports_cancel(store: JobStore) -> None:
    job = new_job(store)
    store.claim(job.id, worker_id="w", lease_s=60)
    beat = store.heartbeat(job.id, attempt=1, lease_s=60, fraction=0.4, stage="kernel")
    assert beat.ok and not beat.cancel_requested
    got = store.get_job(job.id)
    assert got is not None and (got.progress_fraction, got.progress_stage) == (0.4, "kernel")
    store.request_cancel(job.id, tenant="t1")
    assert store.heartbeat(job.id, attempt=1, lease_s=60).cancel_requested


def test_cancel_of_queued_job_cancels_at_once_and_it_cannot_be_claimed(store: JobStore) -> None:
    job = new_job(store)
    canceled = store.request_cancel(job.id, tenant="t1")
    assert canceled is not None and canceled.status == "canceled"
    assert canceled.finished_at is not None
    assert store.claim(job.id, worker_id="w", lease_s=60) is None


def test_cancel_of_running_job_only_requests_it(store: JobStore) -> None:
    job = new_job(store)
    store.claim(job.id, worker_id="w", lease_s=60)
    got = store.request_cancel(job.id, tenant="t1")
    assert got is not None and got.status == "running" and got.cancel_requested
    assert store.finish(job.id, attempt=1, status="canceled")


def test_cancel_of_finished_job_is_rejected(store: JobStore) -> None:
    job = new_job(store)
    store.claim(job.id, worker_id="w", lease_s=60)
    store.finish(job.id, attempt=1, status="succeeded")
    with pytest.raises(JobStateConflict, match="is succeeded: cannot cancel"):
        store.request_cancel(job.id, tenant="t1")


def test_cancel_of_other_tenants_job_finds_nothing(store: JobStore) -> None:
    job = new_job(store, tenant="a")
    assert store.request_cancel(job.id, tenant="b") is None
    got = store.get_job(job.id)
    assert got is not None and got.status == "queued"


def test_two_threads_claiming_the_same_jobs_never_both_win(store_url: str) -> None:
    stores = [JobStore(store_url), JobStore(store_url)]
    ids = [new_job(stores[0]).id for _ in range(8)]
    wins: list[list[str]] = [[], []]
    barrier = threading.Barrier(2)

    def worker(i: int) -> None:
        barrier.wait()
        for job_id in ids:
            if stores[i].claim(job_id, worker_id=f"w{i}", lease_s=60) is not None:
                wins[i].append(job_id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(wins[0] + wins[1]) == sorted(ids)
    assert not set(wins[0]) & set(wins[1])
    for s in stores:
        s.dispose()


def test_idempotent_create_returns_the_same_job_for_the_same_body(store: JobStore) -> None:
    a, created_a = store.create_job_idempotent(idempotency_key="k1", body_sha256="h1", **JOB)
    b, created_b = store.create_job_idempotent(idempotency_key="k1", body_sha256="h1", **JOB)
    assert (created_a, created_b) == (True, False)
    assert a.id == b.id


def test_idempotent_create_with_another_body_conflicts(store: JobStore) -> None:
    store.create_job_idempotent(idempotency_key="k1", body_sha256="h1", **JOB)
    with pytest.raises(IdempotencyConflict, match="different request body"):
        store.create_job_idempotent(idempotency_key="k1", body_sha256="h2", **JOB)


def test_idempotency_keys_are_per_tenant(store: JobStore) -> None:
    a, _ = store.create_job_idempotent(idempotency_key="k", body_sha256="h", **JOB)
    b, created = store.create_job_idempotent(
        idempotency_key="k", body_sha256="other", **{**JOB, "tenant": "t2"}
    )
    assert created and a.id != b.id


def test_concurrent_idempotent_creates_make_one_job(store_url: str) -> None:
    stores = [JobStore(store_url) for _ in range(3)]
    results: list[str] = []
    barrier = threading.Barrier(3)

    def submit(s: JobStore) -> None:
        barrier.wait()
        job, _ = s.create_job_idempotent(idempotency_key="race", body_sha256="h", **JOB)
        results.append(job.id)

    threads = [threading.Thread(target=submit, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 3 and len(set(results)) == 1
    for s in stores:
        s.dispose()


def test_cursor_pages_cover_every_job_once_while_jobs_are_inserted(store: JobStore) -> None:
    created = [new_job(store).id for _ in range(25)]
    seen: list[str] = []
    page, cursor = store.list_jobs(tenant="t1", limit=10)
    seen += [j.id for j in page]
    inserted = [new_job(store).id for _ in range(3)]  # newer: must not show up on later pages
    while cursor is not None:
        page, cursor = store.list_jobs(tenant="t1", limit=10, cursor=cursor)
        seen += [j.id for j in page]
    assert len(seen) == 25 and len(set(seen)) == 25
    assert set(seen) == set(created)
    assert not set(inserted) & set(seen)
    assert seen == list(reversed(created)) or sorted(seen) == sorted(created)


def test_list_is_newest_first_and_filters_by_status_and_tenant(store: JobStore) -> None:
    a = new_job(store)
    b = new_job(store)
    new_job(store, tenant="other")
    store.claim(a.id, worker_id="w", lease_s=60)
    items, cursor = store.list_jobs(tenant="t1", limit=10)
    assert [j.id for j in items] == [b.id, a.id] and cursor is None
    running, _ = store.list_jobs(tenant="t1", status="running", limit=10)
    assert [j.id for j in running] == [a.id]


def test_invalid_cursor_raises(store: JobStore) -> None:
    with pytest.raises(InvalidCursor, match="invalid cursor"):
        store.list_jobs(tenant="t1", limit=10, cursor="not-a-cursor")


def test_cursor_round_trips() -> None:
    now = utcnow()
    assert decode_cursor(encode_cursor(now, "abc")) == (now, "abc")


def test_deleted_job_is_invisible_and_cannot_be_claimed(store: JobStore) -> None:
    job = new_job(store)
    assert store.delete_job(job.id, tenant="t1")
    assert store.get_job(job.id) is None
    assert store.claim(job.id, worker_id="w", lease_s=60) is None
    assert store.list_jobs(tenant="t1", limit=10)[0] == []
    assert not store.delete_job(job.id, tenant="t1")


def test_deleting_a_running_job_requests_cancel(store: JobStore) -> None:
    job = new_job(store)
    store.claim(job.id, worker_id="w", lease_s=60)
    assert store.delete_job(job.id, tenant="t1")
    assert store.heartbeat(job.id, attempt=1, lease_s=60).cancel_requested


def test_orphans_are_expired_running_and_old_unclaimed_queued_jobs(store: JobStore) -> None:
    expired = new_job(store)
    store.claim(expired.id, worker_id="w", lease_s=0.0)
    live = new_job(store)
    store.claim(live.id, worker_id="w", lease_s=600)
    waiting = new_job(store)
    later = utcnow() + timedelta(seconds=5)
    found = {j.id for j in store.orphaned_jobs(later, queued_after_s=1.0)}
    assert found == {expired.id, waiting.id}
    assert store.requeue(expired.id)
    again = store.get_job(expired.id)
    assert again is not None and again.status == "queued" and again.attempt == 1
    assert not store.requeue(live.id)


def test_requeue_of_a_job_with_cancel_requested_cancels_it(store: JobStore) -> None:
    job = new_job(store)
    store.claim(job.id, worker_id="w", lease_s=0.0)
    store.request_cancel(job.id, tenant="t1")
    assert not store.requeue(job.id)
    got = store.get_job(job.id)
    assert got is not None and got.status == "canceled"


def test_claim_past_max_attempts_fails_the_job(store: JobStore) -> None:
    job = new_job(store)
    store.claim(job.id, worker_id="w1", lease_s=0.0, max_attempts=2)
    store.claim(job.id, worker_id="w2", lease_s=0.0, max_attempts=2)
    assert store.claim(job.id, worker_id="w3", lease_s=60, max_attempts=2) is None
    got = store.get_job(job.id)
    assert got is not None and got.status == "failed" and got.error is not None
    assert "started 2 times" in got.error["detail"]


def test_counts_and_durations(store: JobStore) -> None:
    a, b = new_job(store), new_job(store)
    new_job(store)
    store.claim(a.id, worker_id="w", lease_s=60)
    store.finish(a.id, attempt=1, status="succeeded")
    store.claim(b.id, worker_id="w", lease_s=60)
    counts = store.counts_by_status()
    assert counts == {"queued": 1, "running": 1, "succeeded": 1, "failed": 0, "canceled": 0}
    durations = store.durations()
    assert len(durations) == 1 and durations[0][0] == "succeeded" and durations[0][1] >= 0


def test_api_keys_are_found_by_hash_until_revoked(store: JobStore) -> None:
    assert not store.has_api_keys()
    store.add_api_key(tenant="acme", key_sha256="f" * 64)
    assert store.has_api_keys() and store.tenant_for_key("f" * 64) == "acme"
    assert store.revoke_api_key("f" * 64)
    assert store.tenant_for_key("f" * 64) is None
    # fail closed: with every key revoked, authentication stays on
    assert store.has_api_keys()


MIGRATIONS = Path(__file__).parents[3] / "service" / "store" / "migrations" / "versions"


def test_migrations_run_twice_and_match_the_table_metadata(store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from service.store.models import metadata

    s = JobStore(store_url)
    s.migrate()
    s.migrate()
    with s.engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    heads = sorted(p.name[:4] for p in MIGRATIONS.glob("0*.py"))
    assert version == heads[-1]
    assert diff == []
    s.dispose()


def test_concurrent_migrations_do_not_fail(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/race.db"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            JobStore(url).migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []


def test_sqlite_store_uses_wal_journal(tmp_path: object) -> None:
    s = JobStore(f"sqlite:///{tmp_path}/wal.db")
    s.migrate()
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


def test_progress_never_moves_backwards_within_an_attempt(store: JobStore) -> None:
    job = new_job(store)
    store.claim(job.id, worker_id="w", lease_s=0.0)
    store.heartbeat(job.id, attempt=1, lease_s=0.0, fraction=0.5, stage="probes")
    store.heartbeat(job.id, attempt=1, lease_s=0.0, fraction=0.3, stage="validation")
    got = store.get_job(job.id)
    assert got is not None and (got.progress_fraction, got.progress_stage) == (0.5, "validation")
    again = store.claim(job.id, worker_id="w2", lease_s=60)
    assert again is not None and again.progress_fraction == 0.0


def test_idempotency_key_of_a_deleted_job_creates_a_new_job(store: JobStore) -> None:
    a, _ = store.create_job_idempotent(idempotency_key="k", body_sha256="h", **JOB)
    assert store.delete_job(a.id, tenant="t1")
    b, created = store.create_job_idempotent(idempotency_key="k", body_sha256="h", **JOB)
    assert created and b.id != a.id
