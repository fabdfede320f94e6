"""The study store on SQLite and PostgreSQL: compare-and-set claims, one finisher, cancel."""

from __future__ import annotations

import time

import pytest

from service.store.jobs import JobStateConflict, JobStore
from service.store.studies import StudyStore

POINTS = [(8, None, 0), (16, None, 0)]


def _new(studies: StudyStore, tenant: str = "t1") -> str:
    return studies.create(
        tenant=tenant,
        kind="width",
        mode="quantities",
        spec={"type": "mlp"},
        values=[8, 16],
        seeds=[2**62],
        fixed=None,
        options={"budget": "fast"},
        data_ref="d" * 64 + ".json",
        data_format="json",
        queue="cpu",
        points=[(w, d, 2**62) for w, d, _ in POINTS],
    ).id


def test_a_point_is_claimed_once_and_finished_by_its_attempt(store: JobStore) -> None:
    studies = StudyStore(store.engine)
    sid = _new(studies)
    got = studies.claim_point(sid, 0, worker_id="w1", stale_after_s=60)
    assert got is not None
    study, point = got
    assert study.status == "running" and point.attempt == 1 and point.seed == 2**62
    assert studies.claim_point(sid, 0, worker_id="w2", stale_after_s=60) is None
    assert not studies.finish_point(sid, 0, attempt=2, status="succeeded", row={"a": 1})
    assert studies.finish_point(sid, 0, attempt=1, status="succeeded", row={"a": 1})
    assert studies.points(sid)[0].row == {"a": 1}
    assert studies.claim_finish(sid) is False  # point 1 is still queued


def test_a_point_running_past_the_stale_limit_is_claimed_again(store: JobStore) -> None:
    studies = StudyStore(store.engine)
    sid = _new(studies)
    assert studies.claim_point(sid, 1, worker_id="w1", stale_after_s=60) is not None
    time.sleep(0.05)
    again = studies.claim_point(sid, 1, worker_id="w2", stale_after_s=0.01)
    assert again is not None and again[1].attempt == 2 and again[1].worker_id == "w2"
    assert not studies.finish_point(sid, 1, attempt=1, status="succeeded")  # the lost worker


def test_exactly_one_caller_finishes_and_the_outcome_is_written_once(store: JobStore) -> None:
    studies = StudyStore(store.engine)
    sid = _new(studies)
    for i in range(2):
        _, p = studies.claim_point(sid, i, worker_id="w", stale_after_s=60)  # type: ignore[misc]
        studies.finish_point(sid, i, attempt=p.attempt, status="succeeded", row={})
    assert [studies.claim_finish(sid) for _ in range(3)] == [True, False, False]
    assert studies.finish(sid, status="succeeded", result_ref="r", html_ref="h")
    assert not studies.finish(sid, status="failed")
    done = studies.get(sid)
    assert done is not None and done.status == "succeeded" and done.result_ref == "r"


def test_cancel_and_delete_and_tenancy(store: JobStore) -> None:
    studies = StudyStore(store.engine)
    sid = _new(studies, tenant="alice")
    assert studies.get(sid, tenant="bob") is None
    assert studies.request_cancel(sid, tenant="bob") is None
    canceled = studies.request_cancel(sid, tenant="alice")
    assert canceled is not None and canceled.status == "canceled"
    assert studies.point_counts(sid)["canceled"] == 2
    with pytest.raises(JobStateConflict):
        studies.request_cancel(sid, tenant="alice")
    assert studies.claim_point(sid, 0, worker_id="w", stale_after_s=60) is None
    assert not studies.delete(sid, tenant="bob")
    assert studies.delete(sid, tenant="alice")
    assert studies.get(sid) is None and studies.cancel_requested(sid)
