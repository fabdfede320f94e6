"""The janitor re-queues jobs whose worker died and re-sends jobs whose message was lost."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from service.config import Settings
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobRecord, JobStore, utcnow
from tests.worker.conftest import make_job
from worker.janitor import Janitor, default_interval, prune_processed


def _janitor(store: JobStore, settings: Settings) -> tuple[Janitor, list[str]]:
    sent: list[str] = []

    def enqueue(job: JobRecord) -> None:
        sent.append(job.id)

    return Janitor(store, settings, enqueue), sent


def test_running_job_with_expired_lease_is_requeued_and_sent_again(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    job = make_job(store, artifacts)
    assert store.claim(job.id, worker_id="dead", lease_s=0.1) is not None
    janitor, sent = _janitor(store, settings)
    time.sleep(0.2)
    result = janitor.sweep()
    assert result.requeued == [job.id] and sent == [job.id]
    after = store.get_job(job.id)
    assert after is not None and after.status == "queued" and after.attempt == 1
    again = store.claim(job.id, worker_id="fresh", lease_s=30)
    assert again is not None and again.attempt == 2


def test_job_with_a_live_lease_is_left_alone(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    job = make_job(store, artifacts)
    store.claim(job.id, worker_id="alive", lease_s=30)
    janitor, sent = _janitor(store, settings)
    assert janitor.sweep().requeued == [] and sent == []
    current = store.get_job(job.id)
    assert current is not None and current.status == "running"


def test_stale_queued_job_is_resent_once_per_interval(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    job = make_job(store, artifacts)
    janitor, sent = _janitor(store, settings)
    assert janitor.sweep().resent == []  # fresh: its message is presumably on the way
    later = utcnow() + timedelta(seconds=settings.queued_orphan_after_s + 1)
    assert janitor.sweep(later).resent == [job.id]
    assert janitor.sweep(later).resent == []  # not again within queued_orphan_after_s
    assert sent == [job.id]


def test_a_failing_broker_leaves_the_job_queued_for_the_next_sweep(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    job = make_job(store, artifacts)
    store.claim(job.id, worker_id="dead", lease_s=0.05)
    time.sleep(0.1)

    def broken(_: JobRecord) -> None:
        raise ConnectionError("broker down")

    result = Janitor(store, settings, broken).sweep()
    assert result.requeued == []
    current = store.get_job(job.id)
    assert current is not None and current.status == "queued"


def test_sweep_interval_is_half_the_lease_capped_at_30_s(settings: Settings) -> None:
    assert default_interval(settings) == settings.lease_s / 2
    assert default_interval(settings.model_copy(update={"lease_s": 600.0})) == 30.0


def test_old_consumed_message_copies_are_pruned_and_recent_ones_kept(tmp_path: Path) -> None:
    folder = tmp_path / "processed"
    folder.mkdir()
    old, new = folder / "1_a.cpu.msg", folder / "2_b.cpu.msg"
    old.write_text("{}")
    new.write_text("{}")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (day_ago, day_ago))
    assert prune_processed(folder) == 1
    assert not old.exists() and new.exists()
    assert prune_processed(tmp_path / "missing") == 0


def test_the_janitor_expires_jobs_past_retention_once_per_interval(
    store: JobStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    assert settings.retention_days > 0
    old, kept = make_job(store, artifacts), make_job(store, artifacts)
    for job in (old, kept):
        assert store.claim(job.id, worker_id="w", lease_s=60) is not None
        assert store.finish(job.id, attempt=1, status="succeeded")
    janitor, _ = _janitor(store, settings)
    assert janitor.sweep().expired == []  # both finished just now
    later = utcnow() + timedelta(days=settings.retention_days, seconds=1)
    # The first pass ran in the first sweep: the next waits for RETENTION_INTERVAL_S.
    assert janitor.sweep(later).expired == []
    janitor._retention_at = None  # as if the interval had passed
    result = janitor.sweep(later)
    assert sorted(result.expired) == sorted([old.id, kept.id]) and result.purged_files >= 1
    assert store.get_job(old.id) is None and store.get_job(kept.id) is None
    assert not artifacts.exists(old.data_ref) and not artifacts.exists(kept.model_ref)
