"""LeaseKeeper: renews the lease, writes progress throttled, sees cancellation and lost leases."""

from __future__ import annotations

import time

from service.store.artifacts import ArtifactStore
from service.store.jobs import JobStore
from tests.worker.conftest import make_job
from worker.lease import LeaseKeeper


def _claimed(store: JobStore, artifacts: ArtifactStore, lease_s: float = 1.0) -> tuple[str, int]:
    job = make_job(store, artifacts)
    claimed = store.claim(job.id, worker_id="w1", lease_s=lease_s)
    assert claimed is not None
    return job.id, claimed.attempt


def test_background_thread_keeps_the_lease_alive_without_progress_calls(
    store: JobStore, artifacts: ArtifactStore
) -> None:
    job_id, attempt = _claimed(store, artifacts, lease_s=0.6)
    with LeaseKeeper(store, job_id, attempt, lease_s=0.6, min_interval_s=0.1):
        time.sleep(1.5)  # 2.5 leases
        # a live lease: nobody else can claim the job
        assert store.claim(job_id, worker_id="w2", lease_s=0.6) is None
    time.sleep(0.8)
    assert store.claim(job_id, worker_id="w2", lease_s=0.6) is not None


def test_progress_is_written_at_most_once_per_interval_and_flushed_by_the_thread(
    store: JobStore, artifacts: ArtifactStore
) -> None:
    job_id, attempt = _claimed(store, artifacts, lease_s=30)
    with LeaseKeeper(store, job_id, attempt, lease_s=30, min_interval_s=0.3) as keeper:
        keeper.on_progress(0.1, "kernel")
        keeper.on_progress(0.2, "probes")  # within the interval: kept pending, not written
        job = store.get_job(job_id)
        assert job is not None and job.progress_stage == "started"
        time.sleep(0.7)
        job = store.get_job(job_id)
        assert job is not None
        assert (job.progress_fraction, job.progress_stage) == (0.2, "probes")


def test_should_cancel_turns_true_after_the_user_cancels(
    store: JobStore, artifacts: ArtifactStore
) -> None:
    job_id, attempt = _claimed(store, artifacts, lease_s=30)
    with LeaseKeeper(store, job_id, attempt, lease_s=30, min_interval_s=0.05) as keeper:
        assert not keeper.should_cancel()
        store.request_cancel(job_id, tenant="default")
        time.sleep(0.1)
        assert keeper.should_cancel()
        assert keeper.cancel_requested and not keeper.lost


def test_a_reclaimed_job_reads_as_lost_for_the_old_attempt(
    store: JobStore, artifacts: ArtifactStore
) -> None:
    job_id, attempt = _claimed(store, artifacts, lease_s=0.2)
    time.sleep(0.3)
    assert store.claim(job_id, worker_id="w2", lease_s=30) is not None  # expired: re-claimed
    keeper = LeaseKeeper(store, job_id, attempt, lease_s=0.2, min_interval_s=0.0)
    assert keeper.should_cancel()
    assert keeper.lost and not keeper.cancel_requested
