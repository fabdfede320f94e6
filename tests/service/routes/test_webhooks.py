"""Webhook routes and callback_url at submit (real app, dispatch off)."""

from __future__ import annotations

from fastapi.testclient import TestClient

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
HOOK = "http://127.0.0.1:9/hook"


def _jobs(client: TestClient, **headers: str) -> list[str]:
    return [j["id"] for j in client.get(URL, headers=headers).json()["items"]]


def test_a_loopback_callback_is_refused_without_the_flag_and_nothing_is_stored(
    make_client: AppFactory,
) -> None:
    _, client, sent = make_client()
    body = assert_problem(client.post(URL, json=json_body(callback_url=HOOK)), 422)
    assert body["type"] == "urn:plcert:problem:invalid-callback-url"
    assert "loopback" in body["detail"] and "PLCERT_WEBHOOK_ALLOW_PRIVATE" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "callback_url"]
    files = multipart_files()
    r = client.post(URL, files=files, data={"callback_url": "http://[::1]:8080/x"})
    assert assert_problem(r, 422)["type"].endswith(":invalid-callback-url")
    assert _jobs(client) == [] and sent.sent == []


def test_malformed_callback_urls_are_422(make_client: AppFactory) -> None:
    _, client, _ = make_client(webhook_allow_private=True)
    for url, code in [
        ("ftp://127.0.0.1/x", "invalid-callback-url"),
        ("http://user:pw@127.0.0.1/x", "invalid-callback-url"),
        ("http://nowhere.invalid/x", "invalid-callback-url"),
        ("http://127.0.0.1/" + "a" * 2100, "validation"),
    ]:
        body = assert_problem(client.post(URL, json=json_body(callback_url=url)), 422)
        assert body["type"].endswith(f":{code}"), (url, body)
    assert _jobs(client) == []


def test_with_the_flag_the_callback_is_stored_and_shown_json_and_multipart(
    make_client: AppFactory,
) -> None:
    _, client, sent = make_client(webhook_allow_private=True)
    r = client.post(URL, json=json_body(callback_url=HOOK))
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["callback_url"], job["webhook_status"]) == (HOOK, None)
    assert job["links"]["deliveries"] == f"{URL}/{job['id']}/deliveries"
    r = client.post(URL, files=multipart_files(), data={"callback_url": HOOK + "2"})
    assert r.status_code == 202, r.text and r.json()["callback_url"] == HOOK + "2"
    deliveries = client.get(f"{URL}/{job['id']}/deliveries").json()
    assert deliveries == {
        "job_id": job["id"],
        "callback_url": HOOK,
        "event_id": None,
        "event_type": None,
        "status": None,
        "items": [],
    }
    assert len(sent.sent) == 2


def test_the_callback_url_is_part_of_the_idempotent_body(make_client: AppFactory) -> None:
    _, client, _ = make_client(webhook_allow_private=True)
    key = {"Idempotency-Key": "k1"}
    assert client.post(URL, json=json_body(callback_url=HOOK), headers=key).status_code == 202
    again = client.post(URL, json=json_body(callback_url=HOOK), headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = client.post(URL, json=json_body(callback_url=HOOK + "x"), headers=key)
    assert assert_problem(other, 422)["type"].endswith(":idempotency-key-reuse")


def test_canceling_a_queued_job_starts_its_event(make_client: AppFactory) -> None:
    app, client, _ = make_client(webhook_allow_private=True)
    job_id = client.post(URL, json=json_body(callback_url=HOOK)).json()["id"]
    assert client.post(f"{URL}/{job_id}/cancel").json()["webhook_status"] == "pending"
    got = client.get(f"{URL}/{job_id}/deliveries").json()
    assert (got["status"], got["event_type"], got["event_id"]) == (
        "pending",
        "certification.canceled",
        f"msg_{job_id}",
    )
    store: JobStore = app.state.store
    assert store.list_deliveries(job_id) == []


def test_each_tenant_reads_and_rotates_its_own_secret(make_client: AppFactory) -> None:
    _, client, _ = make_client(api_keys=f"alice:{ALICE_KEY},bob:{BOB_KEY}")
    alice, bob = {"X-API-Key": ALICE_KEY}, {"X-API-Key": BOB_KEY}
    a1 = client.get("/v1/webhooks/secret", headers=alice).json()
    assert a1["secret"].startswith("whsec_")
    assert client.get("/v1/webhooks/secret", headers=alice).json() == a1
    b1 = client.get("/v1/webhooks/secret", headers=bob).json()
    assert b1["secret"] != a1["secret"]
    a2 = client.post("/v1/webhooks/secret/rotate", headers=alice).json()
    assert a2["secret"] != a1["secret"]
    assert client.get("/v1/webhooks/secret", headers=bob).json() == b1
    assert_problem(client.get("/v1/webhooks/secret"), 401)


def test_another_tenants_deliveries_are_404(make_client: AppFactory) -> None:
    _, client, _ = make_client(api_keys=f"alice:{ALICE_KEY},bob:{BOB_KEY}")
    job_id = client.post(URL, json=json_body(), headers={"X-API-Key": BOB_KEY}).json()["id"]
    r = client.get(f"{URL}/{job_id}/deliveries", headers={"X-API-Key": ALICE_KEY})
    assert assert_problem(r, 404)["type"].endswith(":job-not-found")
    r = client.get(f"{URL}/{job_id}/deliveries", headers={"X-API-Key": BOB_KEY})
    assert r.status_code == 200 and r.json()["callback_url"] is None
