"""Tenancy: every route with another tenant's key, a revoked key and an unknown key; the
per-tenant job quotas and the request rate limit (429 with Retry-After)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.config import hash_api_key
from service.store.jobs import JobStore
from tests.service.conftest import (
    ALICE_KEY,
    BOB_KEY,
    AppFactory,
    assert_problem,
    json_body,
    multipart_files,
)

URL = "/v1/certifications"
REVOKED_KEY = "carol-revoked-key-0123456789"
REMOVED_KEY = "dave-removed-from-env-key-0123"
UNKNOWN_KEY = "nobody-knows-this-key-0123456"

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/"),
}
"""Routes that answer without a key (probes and documentation); every other route needs one."""

NOT_IN_SCHEMA = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc"), ("GET", "/")}


def _app_with_tenants(make_client: AppFactory, **overrides: Any) -> tuple[FastAPI, TestClient]:
    app, client, _ = make_client(api_keys=f"alice:{ALICE_KEY},bob:{BOB_KEY}", **overrides)
    store: JobStore = app.state.store
    store.add_api_key(tenant="carol", key_sha256=hash_api_key(REVOKED_KEY))
    assert store.revoke_api_key(hash_api_key(REVOKED_KEY))
    return app, client


def _succeeded_job(app: FastAPI, client: TestClient, key: str) -> str:
    """A job of ``key``'s tenant that succeeded, with a JSON and an HTML report."""
    r = client.post(URL, json=json_body(), headers={"X-API-Key": key})
    assert r.status_code == 202, r.text
    job_id = str(r.json()["id"])
    store: JobStore = app.state.store
    claimed = store.claim(job_id, worker_id="test", lease_s=60)
    assert claimed is not None
    assert store.finish(
        job_id,
        attempt=claimed.attempt,
        status="succeeded",
        report_ref=app.state.artifacts.put(b'{"verdict": "certified", "bob": 1}', suffix=".json"),
        html_ref=app.state.artifacts.put(b"<html>bob's report</html>", suffix=".html"),
        verdict="certified",
    )
    return job_id


def _leaks(response: Any, bob_job: str) -> list[str]:
    """What of bob's job shows in an answer to someone else: its tenant, state, verdict,
    report, or its id where the caller did not send it (a problem's ``instance`` and ``detail``
    echo the requested path)."""
    text = response.text
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        body = response.json()
        body.pop("instance", None)
        body.pop("detail", None)
        text = json.dumps(body)
    words = ("bob", "succeeded", "certified", "report</html>")
    return [w for w in (*words, bob_job) if w in text]


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route: the OpenAPI document's and the documentation's."""
    paths = app.openapi()["paths"]
    return {(m.upper(), p) for p, ops in paths.items() for m in ops} | NOT_IN_SCHEMA


def _call(client: TestClient, method: str, path: str, job_id: str, key: str | None) -> Any:
    url = path.replace("{job_id}", job_id)
    headers = {"X-API-Key": key} if key is not None else {}
    if method == "POST" and path in (URL, "/v1/estimates"):
        return client.post(url, json=json_body(), headers=headers)
    return client.request(method, url, headers=headers)


def test_the_route_list_is_the_one_this_test_knows(make_client: AppFactory) -> None:
    app, _ = _app_with_tenants(make_client)
    routes = _routes(app)
    assert routes >= PUBLIC
    job_routes = {r for r in routes if "{job_id}" in r[1]}
    # get, delete, cancel, report, report.html, deliveries
    assert len(job_routes) == 6, job_routes
    # list, submit, estimate, metrics, webhook secret (get, rotate), comparisons (submit, get,
    # report.html: tests/service/routes/test_comparisons.py checks their tenancy), studies
    # (submit, get, report.html, cancel, delete: tests/service/routes/test_studies.py)
    assert len(routes) == len(PUBLIC) + len(job_routes) + 14


@pytest.mark.parametrize("key", [REVOKED_KEY, REMOVED_KEY, UNKNOWN_KEY, None])
def test_a_revoked_removed_unknown_or_missing_key_gets_401_on_every_route(
    make_client: AppFactory, key: str | None
) -> None:
    app, client = _app_with_tenants(make_client)
    bob_job = _succeeded_job(app, client, BOB_KEY)
    for method, path in sorted(_routes(app) - PUBLIC):
        r = _call(client, method, path, bob_job, key)
        body = assert_problem(r, 401)
        assert body["type"].endswith(":unauthorized"), (method, path)
        assert r.headers["WWW-Authenticate"].startswith("ApiKey")
        assert _leaks(r, bob_job) == [], (method, path)
    for method, path in sorted(PUBLIC):
        assert _call(client, method, path, bob_job, key).status_code in (200, 503), path
    # Nothing happened to bob's job.
    r = client.get(f"{URL}/{bob_job}", headers={"X-API-Key": BOB_KEY})
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    assert client.get(f"{URL}/{bob_job}/report", headers={"X-API-Key": BOB_KEY}).json()["bob"] == 1


def test_a_key_removed_from_the_environment_stops_working(make_client: AppFactory) -> None:
    _, before, _ = make_client(api_keys=f"alice:{ALICE_KEY},dave:{REMOVED_KEY}")
    assert before.get(URL, headers={"X-API-Key": REMOVED_KEY}).status_code == 200
    _, after = _app_with_tenants(make_client)  # the same data folder, dave's key gone
    assert_problem(after.get(URL, headers={"X-API-Key": REMOVED_KEY}), 401)


def test_another_tenants_key_sees_none_of_bobs_jobs_on_any_route(make_client: AppFactory) -> None:
    app, client = _app_with_tenants(make_client)
    bob_job = _succeeded_job(app, client, BOB_KEY)
    bob_secret = app.state.store.webhook_secret("bob").secret
    alice = {"X-API-Key": ALICE_KEY}
    checked = set()
    for method, path in sorted(_routes(app) - PUBLIC):
        r = _call(client, method, path, bob_job, ALICE_KEY)
        checked.add((method, path))
        if "{job_id}" in path:
            body = assert_problem(r, 404)
            assert body["type"].endswith(":job-not-found"), (method, path)
        elif (method, path) == ("GET", URL):
            assert r.status_code == 200 and r.json()["items"] == []
        elif (method, path) == ("POST", URL):
            assert r.status_code == 202 and r.json()["id"] != bob_job  # alice's own job
        elif path.startswith(("/v1/comparisons", "/v1/studies")):
            # none of bob's; a job body is no comparison or study
            assert r.status_code in (404, 415, 422), (method, path, r.text)
        elif path.startswith("/v1/webhooks/secret"):  # alice's own secret, never bob's
            assert r.status_code == 200 and r.json()["secret"] != bob_secret
            continue  # random base64: _leaks' words could appear in it by chance
        else:  # estimates, metrics: nothing per job
            assert r.status_code == 200, (method, path, r.text)
        if path == "/metrics":  # service-wide counts by status (labels such as "succeeded")
            assert "bob" not in r.text and bob_job not in r.text
        else:
            assert _leaks(r, bob_job) == [], (method, path)
    assert len(checked) == len(_routes(app)) - len(PUBLIC)
    listed = client.get(URL, headers=alice).json()["items"]
    assert [j["id"] for j in listed] != [] and bob_job not in {j["id"] for j in listed}
    # Alice's cancel and delete attempts left bob's job and report as they were.
    bob = {"X-API-Key": BOB_KEY}
    assert client.get(f"{URL}/{bob_job}", headers=bob).json()["status"] == "succeeded"
    assert client.get(f"{URL}/{bob_job}/report.html", headers=bob).status_code == 200
    assert [j["id"] for j in client.get(URL, headers=bob).json()["items"]] == [bob_job]


# ----- quotas ----------------------------------------------------------------------------


def _submit(client: TestClient, key: str) -> Any:
    return client.post(URL, json=json_body(), headers={"X-API-Key": key})


def test_a_submission_over_the_queued_cap_is_a_429_tenant_quota(make_client: AppFactory) -> None:
    app, client = _app_with_tenants(make_client, max_queued_per_tenant=2)
    first = [_submit(client, ALICE_KEY) for _ in range(2)]
    assert [r.status_code for r in first] == [202, 202]
    r = _submit(client, ALICE_KEY)
    body = assert_problem(r, 429)
    assert body["type"].endswith(":tenant-quota") and body["queued"] == 2
    assert "PLCERT_MAX_QUEUED_PER_TENANT=2" in body["detail"]
    assert int(r.headers["Retry-After"]) >= 1
    multipart = client.post(URL, files=multipart_files(), headers={"X-API-Key": ALICE_KEY})
    assert_problem(multipart, 429)
    assert _submit(client, BOB_KEY).status_code == 202  # another tenant has its own quota
    # A finished job frees its place; a running one still counts as unfinished, not queued.
    store: JobStore = app.state.store
    assert store.claim(first[0].json()["id"], worker_id="w", lease_s=60) is not None
    assert _submit(client, ALICE_KEY).status_code == 202
    assert_problem(_submit(client, ALICE_KEY), 429)
    assert client.post(f"{URL}/{first[1].json()['id']}/cancel", headers={"X-API-Key": ALICE_KEY})
    assert _submit(client, ALICE_KEY).status_code == 202
    assert store.unfinished_counts("alice") == {"queued": 2, "running": 1}


def test_an_idempotent_replay_is_answered_even_at_the_cap(make_client: AppFactory) -> None:
    _, client = _app_with_tenants(make_client, max_queued_per_tenant=1)
    headers = {"X-API-Key": ALICE_KEY, "Idempotency-Key": "once"}
    r1 = client.post(URL, json=json_body(), headers=headers)
    r2 = client.post(URL, json=json_body(), headers=headers)
    assert r1.status_code == r2.status_code == 202 and r1.json()["id"] == r2.json()["id"]
    assert r2.headers["Idempotent-Replayed"] == "true"


def test_the_running_cap_alone_bounds_unfinished_jobs(make_client: AppFactory) -> None:
    app, client = _app_with_tenants(make_client, max_running_per_tenant=1)
    job = _submit(client, ALICE_KEY).json()["id"]
    body = assert_problem(_submit(client, ALICE_KEY), 429)
    assert body["type"].endswith(":tenant-quota")
    assert "PLCERT_MAX_RUNNING_PER_TENANT" in body["detail"]
    store: JobStore = app.state.store
    claimed = store.claim(job, worker_id="w", lease_s=60)
    assert claimed is not None
    body = assert_problem(_submit(client, ALICE_KEY), 429)
    assert body["running"] == 1 and body["queued"] == 0
    assert store.finish(job, attempt=claimed.attempt, status="failed", error={"type": "x"})
    assert _submit(client, ALICE_KEY).status_code == 202


def test_queued_and_running_caps_add_up(make_client: AppFactory) -> None:
    app, client = _app_with_tenants(make_client, max_queued_per_tenant=1, max_running_per_tenant=1)
    store: JobStore = app.state.store
    job = _submit(client, ALICE_KEY).json()["id"]
    assert store.claim(job, worker_id="w", lease_s=60) is not None
    assert _submit(client, ALICE_KEY).status_code == 202  # 1 running + 1 queued
    body = assert_problem(_submit(client, ALICE_KEY), 429)
    assert body["queued"] == 1 and body["running"] == 1


# ----- rate limit ------------------------------------------------------------------------


def test_requests_beyond_the_rate_limit_get_429_with_retry_after(make_client: AppFactory) -> None:
    _, client = _app_with_tenants(make_client, rate_limit=3)
    alice, bob = {"X-API-Key": ALICE_KEY}, {"X-API-Key": BOB_KEY}
    assert [client.get(URL, headers=alice).status_code for _ in range(3)] == [200] * 3
    r = client.get(URL, headers=alice)
    body = assert_problem(r, 429)
    assert body["type"].endswith(":rate-limited") and body["limit_per_minute"] == 3
    # 3 per minute refill one token every 20 s.
    assert 1 <= int(r.headers["Retry-After"]) <= 20
    assert_problem(client.get(f"{URL}/nope", headers=alice), 429)
    assert_problem(client.post(URL, json=json_body(), headers=alice), 429)
    assert_problem(client.post("/v1/estimates", json=json_body(), headers=alice), 429)
    assert client.get(URL, headers=bob).status_code == 200  # per tenant
    # Probes, metrics and documentation are exempt.
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path, headers=alice).status_code in (200, 503), path
    # A bad key is a 401 before any token is taken.
    assert_problem(client.get(URL, headers={"X-API-Key": UNKNOWN_KEY}), 401)


def test_the_429_is_documented_with_retry_after_on_every_limited_route(
    make_client: AppFactory,
) -> None:
    app, _ = _app_with_tenants(make_client)
    doc = app.openapi()
    limited = [(m, p) for p, ops in doc["paths"].items() for m in ops if p.startswith("/v1/")]
    # 8 job routes, deliveries, webhook secret (2), comparisons (3), studies (5)
    assert len(limited) == 19
    for method, path in limited:
        answer = doc["paths"][path][method]["responses"]["429"]
        assert answer["headers"]["Retry-After"]["required"] is True, (method, path)
        assert "application/problem+json" in answer["content"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "429" not in doc["paths"][path]["get"]["responses"]
    json.dumps(doc)  # serialisable as served
