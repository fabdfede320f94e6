"""LeaseKeeper: renews the lease, writes progress throttled, sees cancellation and lost leases."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from service.store.artifacts import ArtifactStore
from service.store.jobs import JobStore
from tests.worker.conftest import make_job
from worker.lease import LeaseKeeper

pytestmark = pytest.mark.serial  # wall-clock limits: nothing else may run beside it


class _SpyStore:
    """Forwards to a JobStore and records which thread called which method."""

    def __init__(self, store: JobStore, calls: list[str]) -> None:
        self._store, self.calls = store, calls
        self.threads: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            self.threads.append((name, threading.get_ident()))
            return target(*args, **kwargs)

        return call


def _wait_for_stage(store: JobStore, job_id: str, stage: str, *, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        job = store.get_job(job_id)
        assert job is not None
        if job.progress_stage == stage:
            return
        assert time.monotonic() < deadline, (
            f"stage {stage!r} not written, still {job.progress_stage!r}"
        )
        time.sleep(0.01)


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


def test_steps_within_a_stage_are_written_at_most_once_per_interval_and_flushed_by_the_thread(
    store: JobStore, artifacts: ArtifactStore
) -> None:
    job_id, attempt = _claimed(store, artifacts, lease_s=30)
    with LeaseKeeper(store, job_id, attempt, lease_s=30, min_interval_s=0.6) as keeper:
        keeper.on_progress(0.1, "kernel: block 1/4")
        _wait_for_stage(store, job_id, "kernel: block 1/4", within=0.3)  # a new stage: at once
        keeper.on_progress(0.2, "kernel: block 2/4")
        keeper.on_progress(0.3, "kernel: block 3/4")  # same stage: pending until the interval
        time.sleep(0.2)
        job = store.get_job(job_id)
        assert job is not None and job.progress_stage == "kernel: block 1/4"
        time.sleep(0.7)
        job = store.get_job(job_id)
        assert job is not None
        assert (job.progress_fraction, job.progress_stage) == (0.3, "kernel: block 3/4")


def test_a_stage_change_is_written_at_once_even_within_the_interval(
    store: JobStore, artifacts: ArtifactStore
) -> None:
    job_id, attempt = _claimed(store, artifacts, lease_s=30)
    with LeaseKeeper(store, job_id, attempt, lease_s=30, min_interval_s=5.0) as keeper:
        keeper.on_progress(0.1, "kernel")
        _wait_for_stage(store, job_id, "kernel", within=0.5)
        keeper.on_progress(0.2, "hessian norm: restart 1/3")
        _wait_for_stage(store, job_id, "hessian norm: restart 1/3", within=0.5)


def test_callbacks_never_touch_the_store(store: JobStore, artifacts: ArtifactStore) -> None:
    # The core calls both from inner loops: they must be memory operations only.
    job_id, attempt = _claimed(store, artifacts, lease_s=30)
    calls: list[str] = []
    spy = _SpyStore(store, calls)
    with LeaseKeeper(spy, job_id, attempt, lease_s=30, min_interval_s=0.2) as keeper:  # type: ignore[arg-type]
        time.sleep(0.1)
        main_thread = threading.get_ident()
        for i in range(20_000):
            keeper.on_progress(i / 20_000, f"gd: step {i}")
            keeper.should_cancel()
        assert all(thread != main_thread for _, thread in spy.threads)
    assert calls  # the background thread did write


def test_should_cancel_turns_true_within_the_poll_interval_without_any_progress(
    store: JobStore, artifacts: ArtifactStore
) -> None:
    job_id, attempt = _claimed(store, artifacts, lease_s=30)
    with LeaseKeeper(store, job_id, attempt, lease_s=30, min_interval_s=10.0) as keeper:
        time.sleep(0.2)
        assert not keeper.should_cancel()
        store.request_cancel(job_id, tenant="default")
        asked = time.monotonic()
        while not keeper.should_cancel():
            assert time.monotonic() - asked < 0.5 + 0.5, "cancel not seen within poll + slack"
            time.sleep(0.01)
        assert keeper.cancel_requested and not keeper.lost


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


def test_a_failing_store_is_retried_once_per_interval_not_every_tick(
    store: JobStore, artifacts: ArtifactStore
) -> None:
    job_id, attempt = _claimed(store, artifacts, lease_s=30)
    calls: list[float] = []

    class Failing:
        def heartbeat(self, *_: object, **__: object) -> object:
            calls.append(time.monotonic())
            raise OSError("database down")

        def attempt_state(self, *_: object, **__: object) -> object:
            return store.attempt_state(job_id, attempt=attempt)

    keeper = LeaseKeeper(Failing(), job_id, attempt, lease_s=30, min_interval_s=0.5)  # type: ignore[arg-type]
    with keeper:
        keeper.on_progress(0.1, "kernel")
        time.sleep(1.3)
        keeper.on_progress(0.2, "hessian norm")  # a new stage while the store is down
        time.sleep(0.3)
    assert 2 <= len(calls) <= 4, calls
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(calls))


def test_stage_seconds_add_up_the_wall_time_of_each_stage_name(
    store: JobStore, artifacts: ArtifactStore
) -> None:
    job_id, attempt = _claimed(store, artifacts, lease_s=30)
    keeper = LeaseKeeper(store, job_id, attempt, lease_s=30)
    keeper.on_progress(0.0, "kernel")
    time.sleep(0.2)
    keeper.on_progress(0.1, "hessian norm: restart 1/3")
    time.sleep(0.1)
    keeper.on_progress(0.2, "hessian norm: restart 2/3")  # same stage name: no new entry
    time.sleep(0.1)
    keeper.on_progress(0.3, "kernel")  # a stage seen again adds up
    time.sleep(0.1)
    seconds = keeper.stage_seconds()
    assert set(seconds) == {"kernel", "hessian norm"}
    assert seconds["kernel"] == pytest.approx(0.3, abs=0.08)
    assert seconds["hessian norm"] == pytest.approx(0.2, abs=0.08)
