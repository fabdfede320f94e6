"""/healthz, /readyz and /metrics."""

from __future__ import annotations

from tests.service.conftest import AppFactory, assert_problem, json_body


def test_healthz_is_ok(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_is_ready_with_a_database_and_dispatch_off(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["database"] == "ok"


def test_readyz_is_503_problem_naming_the_failed_database(make_client: AppFactory) -> None:
    app, client, _ = make_client()
    app.state.store.engine.dispose()
    db_file = app.state.settings.data_dir / "plcert.db"
    # Point the store at a database file that cannot be opened (a directory).
    from service.store.jobs import JobStore

    app.state.store = JobStore(f"sqlite:///{db_file.parent}")
    body = assert_problem(client.get("/readyz"), 503)
    assert body["checks"]["database"] != "ok" and "database" in body["detail"]


def test_metrics_expose_job_queue_duration_and_http_metrics(make_client: AppFactory) -> None:
    app, client, _ = make_client()
    job_id = client.post("/v1/certifications", json=json_body()).json()["id"]
    store = app.state.store
    claimed = store.claim(job_id, worker_id="w", lease_s=60)
    store.finish(job_id, attempt=claimed.attempt, status="failed")
    client.post("/v1/certifications", json=json_body(options={"seed": 3}))
    text = client.get("/metrics").text
    assert 'plcert_jobs{status="queued"} 1.0' in text
    assert 'plcert_jobs{status="failed"} 1.0' in text
    assert "plcert_queue_depth 1.0" in text
    assert 'plcert_job_duration_seconds_count{status="failed"} 1.0' in text
    assert (
        'plcert_http_requests_total{method="POST",route="/v1/certifications",status="202"}' in text
    )
    assert "plcert_http_request_duration_seconds_bucket" in text


def test_readyz_with_celery_dispatch_and_no_worker_is_503(make_client: AppFactory) -> None:
    # The real dispatch module on the filesystem broker: the broker is there, no worker is.
    _, client, _ = make_client(dispatch="celery")
    body = assert_problem(client.get("/readyz"), 503)
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["workers"] != "ok" and "workers" in body["detail"]
