"""The delivery step of the webhook task against a real receiver, and the janitor's part."""

from __future__ import annotations

import json
from datetime import timedelta

from standardwebhooks.webhooks import Webhook

from service.config import Settings, load_settings
from service.store.jobs import JobStore, utcnow
from tests.service.conftest import new_job
from tests.service.webhooks.receiver import Answer, receiver
from worker.janitor import WEBHOOK_GRACE_S, Janitor
from worker.webhooks import deliver_once


def _settings(settings: Settings, **kw: object) -> Settings:
    values = {**settings.model_dump(), "webhook_allow_private": True, **kw}
    return load_settings(**values)


def _finished_job(store: JobStore, url: str, status: str = "succeeded") -> str:
    job = new_job(store, callback_url=url)
    store.claim(job.id, worker_id="w", lease_s=60)
    store.finish(job.id, attempt=1, status=status, verdict="certified")  # type: ignore[arg-type]
    assert store.mark_webhook_pending(job.id)
    return job.id


def test_failed_attempts_retry_with_backoff_until_one_succeeds(
    store: JobStore, settings: Settings
) -> None:
    s = _settings(settings, webhook_retry_base_s=30, webhook_max_attempts=5)
    with receiver(Answer(500, b"busy"), Answer(503), Answer(200)) as rx:
        job_id = _finished_job(store, rx.url)
        steps = []
        now = utcnow()
        for _ in range(3):
            step = deliver_once(job_id, store=store, settings=s)
            assert step is not None
            steps.append(step)
            # the next attempt is not due before its backoff delay
            assert deliver_once(job_id, store=store, settings=s) is None
            with store.engine.begin() as conn:  # let the backoff pass
                from service.store.models import jobs

                conn.execute(jobs.update().where(jobs.c.id == job_id).values(webhook_next_at=now))
        got = rx.wait_for(3, timeout=5)
    assert [(st.attempt, st.webhook_status, st.retry_in_s) for st in steps] == [
        (1, "pending", 30.0),
        (2, "pending", 60.0),
        (3, "delivered", None),
    ]
    log = store.list_deliveries(job_id)
    assert [(d.attempt, d.status_code) for d in log] == [(1, 500), (2, 503), (3, 200)]
    assert log[0].response_prefix == "busy"
    # one event: the same webhook-id on every attempt, each signed with the tenant's secret
    secret = store.webhook_secret("t1").secret
    assert {r.headers["webhook-id"] for r in got} == {f"msg_{job_id}"}
    for r in got:
        payload = Webhook(secret).verify(r.body, r.headers)
        assert payload["type"] == "certification.succeeded"
        assert payload["data"]["id"] == job_id and payload["data"]["verdict"] == "certified"
    assert json.loads(got[0].body) == json.loads(got[2].body)


def test_the_event_is_given_up_after_the_last_attempt(store: JobStore, settings: Settings) -> None:
    s = _settings(settings, webhook_max_attempts=2, webhook_retry_base_s=0.01)
    with receiver(Answer(500)) as rx:
        job_id = _finished_job(store, rx.url, status="failed")
        first = deliver_once(job_id, store=store, settings=s)
        assert first is not None and first.webhook_status == "pending"
        import time

        time.sleep(0.05)
        last = deliver_once(job_id, store=store, settings=s)
        assert last is not None and (last.webhook_status, last.retry_in_s) == ("failed", None)
        assert deliver_once(job_id, store=store, settings=s) is None
    job = store.get_job(job_id)
    assert job is not None and job.webhook_status == "failed" and job.webhook_attempts == 2


def test_without_the_flag_a_loopback_receiver_is_refused_at_delivery_too(
    store: JobStore, settings: Settings
) -> None:
    s = _settings(settings, webhook_allow_private=False)
    with receiver(Answer(200)) as rx:
        job_id = _finished_job(store, rx.url)
        step = deliver_once(job_id, store=store, settings=s)
        assert rx.received == []
    assert step is not None and step.outcome.error is not None
    assert "loopback" in step.outcome.error


def test_the_janitor_starts_events_no_one_started(store: JobStore, settings: Settings) -> None:
    sent: list[str] = []
    job = new_job(store, callback_url="https://hooks.example/x")
    store.claim(job.id, worker_id="w", lease_s=60)
    store.finish(job.id, attempt=1, status="failed")
    janitor = Janitor(store, settings, lambda j: None, send_webhook=sent.append)
    assert janitor.sweep().webhooks == []  # within the grace period: the worker's own send
    later = utcnow() + timedelta(seconds=WEBHOOK_GRACE_S + 5)
    assert janitor.sweep(later).webhooks == [job.id]
    assert janitor.sweep(later).webhooks == []  # at most once per grace period
    got = store.get_job(job.id)
    assert got is not None and got.webhook_status == "pending" and sent == [job.id]
