"""The /v1/certifications API on a real app with a real SQLite store (dispatch recorded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from service.store.jobs import JobStore
from tests.service.conftest import (
    ALICE_KEY,
    BOB_KEY,
    AppFactory,
    assert_problem,
    json_body,
    mlp_spec,
    multipart_files,
    npz_bytes,
    onnx_mlp_bytes,
    small_data,
)

URL = "/v1/certifications"


def test_multipart_submit_answers_202_with_location_and_sends_the_job(
    make_client: AppFactory,
) -> None:
    _, client, dispatch = make_client()
    r = client.post(URL, files=multipart_files(), data={"options": '{"budget": "fast"}'})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["progress"] == {"fraction": 0.0, "stage": "queued"}
    assert r.headers["location"] == f"{URL}/{job['id']}"
    assert r.headers["retry-after"] == "2"
    assert job["options"]["budget"] == "fast" and job["report_url"] is None
    assert dispatch.sent == [job["id"]]
    got = client.get(r.headers["location"])
    assert got.status_code == 200 and got.json()["id"] == job["id"]


def test_onnx_upload_is_accepted(make_client: AppFactory) -> None:
    _, client, dispatch = make_client()
    r = client.post(URL, files=multipart_files(onnx_mlp_bytes(), model_name="m.onnx"))
    assert r.status_code == 202, r.text
    assert len(dispatch.sent) == 1


def test_json_submit_with_inline_data_and_named_dataset(make_client: AppFactory) -> None:
    app, client, dispatch = make_client()
    r = client.post(URL, json=json_body())
    assert r.status_code == 202, r.text
    named = client.post(
        URL,
        json=json_body(
            model_spec=mlp_spec(input_dim=64, widths=(8,), output_dim=10),
            data="sklearn:digits?n=16",
        ),
    )
    assert named.status_code == 202, named.text
    store: JobStore = app.state.store
    job = store.get_job(named.json()["id"])
    assert job is not None and job.data_format == "named"
    assert app.state.artifacts.get(job.data_ref) == b"sklearn:digits?n=16"
    assert len(dispatch.sent) == 2


def test_gpu_device_goes_to_the_gpu_queue(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    r = client.post(URL, json=json_body(options={"device": "cuda"}))
    assert r.status_code == 202 and r.json()["queue"] == "gpu"


def test_bad_onnx_bytes_are_a_422_with_the_importers_message(make_client: AppFactory) -> None:
    _, client, dispatch = make_client()
    r = client.post(URL, files=multipart_files(b"\x08\x07garbage-not-onnx", model_name="m.onnx"))
    body = assert_problem(r, 422)
    assert (
        body["type"].startswith("urn:plcert:problem:model-format")
        or "onnx" in body["detail"].lower()
    )
    assert dispatch.sent == []


def test_bad_spec_is_a_422(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    spec = {**mlp_spec(), "activation": "no-such-activation"}
    r = client.post(URL, files=multipart_files(json.dumps(spec).encode()))
    body = assert_problem(r, 422)
    assert "activation" in body["detail"]
    r = client.post(URL, json=json_body(model_spec=spec))
    body = assert_problem(r, 422)
    assert body["errors"] and body["errors"][0]["loc"][:2] == ["body", "model_spec"]


def test_nan_data_is_a_422_naming_the_position(make_client: AppFactory) -> None:
    _, client, dispatch = make_client()
    X, y = small_data()
    X[2, 1] = np.nan
    r = client.post(URL, files=multipart_files(data=npz_bytes(X, y)))
    body = assert_problem(r, 422)
    assert "non-finite" in body["detail"] and body["type"] == "urn:plcert:problem:dataset"
    assert dispatch.sent == []


def test_data_that_does_not_fit_the_model_is_a_422(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    X, y = small_data(d=5)
    r = client.post(URL, files=multipart_files(data=npz_bytes(X, y)))
    body = assert_problem(r, 422)
    assert body["type"] == "urn:plcert:problem:shape-mismatch"


def test_unknown_option_is_a_422_with_field_errors(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    r = client.post(URL, files=multipart_files(), data={"options": '{"budgett": "fast"}'})
    body = assert_problem(r, 422)
    assert body["errors"][0]["loc"] == ["body", "options", "budgett"]
    r = client.post(URL, files=multipart_files(), data={"options": "{not json"})
    assert assert_problem(r, 422)["errors"][0]["type"] == "json_invalid"
    r = client.post(URL, json=json_body(options={"seed": -1}))
    assert assert_problem(r, 422)["errors"][0]["loc"] == ["body", "options", "seed"]


def test_missing_data_part_is_a_422(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    files = multipart_files()
    del files["data"]
    body = assert_problem(client.post(URL, files=files), 422)
    assert "'data'" in body["detail"]


def test_other_content_type_is_a_415(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    r = client.post(URL, content=b"x", headers={"content-type": "text/plain"})
    assert_problem(r, 415)


def test_upload_over_the_cap_is_a_413(make_client: AppFactory) -> None:
    _, client, dispatch = make_client(max_upload_bytes=20_000)
    big = npz_bytes(*small_data(n=2000))
    body = assert_problem(client.post(URL, files=multipart_files(data=big)), 413)
    assert "20000" in body["detail"]
    assert dispatch.sent == []


def test_streamed_upload_without_length_over_the_cap_is_a_413(make_client: AppFactory) -> None:
    _, client, _ = make_client(max_upload_bytes=10_000)

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"{" + b" " * 1000

    r = client.post(URL, content=chunks(), headers={"content-type": "application/json"})
    assert_problem(r, 413)


def test_same_idempotency_key_and_body_give_the_same_job(make_client: AppFactory) -> None:
    _, client, dispatch = make_client()
    h = {"Idempotency-Key": "abc-1"}
    first = client.post(URL, json=json_body(), headers=h)
    second = client.post(URL, json=json_body(), headers=h)
    assert first.status_code == 202 and second.status_code in (200, 202)
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert dispatch.sent == [first.json()["id"]]


def test_same_idempotency_key_with_another_body_is_a_422(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    h = {"Idempotency-Key": "abc-2"}
    assert client.post(URL, json=json_body(), headers=h).status_code == 202
    r = client.post(URL, json=json_body(options={"budget": "thorough"}), headers=h)
    body = assert_problem(r, 422)
    assert body["type"] == "urn:plcert:problem:idempotency-key-reuse"


def test_unknown_job_is_a_404_problem(client: object) -> None:
    from fastapi.testclient import TestClient

    assert isinstance(client, TestClient)
    body = assert_problem(client.get(f"{URL}/0123456789abcdef"), 404)
    assert body["type"] == "urn:plcert:problem:job-not-found"


def test_report_is_409_until_succeeded_then_served(make_client: AppFactory) -> None:
    app, client, _ = make_client()
    job_id = client.post(URL, json=json_body()).json()["id"]
    body = assert_problem(client.get(f"{URL}/{job_id}/report"), 409)
    assert body["job_status"] == "queued"
    assert_problem(client.get(f"{URL}/{job_id}/report.html"), 409)
    # Do what a worker does: claim, store the report, finish.
    store: JobStore = app.state.store
    claimed = store.claim(job_id, worker_id="test", lease_s=60)
    assert claimed is not None
    report_ref = app.state.artifacts.put(b'{"verdict": "certified"}', suffix=".json")
    html_ref = app.state.artifacts.put(b"<html><body>ok</body></html>", suffix=".html")
    assert store.finish(
        job_id,
        attempt=claimed.attempt,
        status="succeeded",
        report_ref=report_ref,
        html_ref=html_ref,
        verdict="certified",
    )
    job = client.get(f"{URL}/{job_id}").json()
    assert job["status"] == "succeeded" and job["verdict"] == "certified"
    assert job["report_url"] == f"{URL}/{job_id}/report"
    assert job["progress"]["fraction"] == 1.0
    r = client.get(job["report_url"])
    assert r.status_code == 200 and r.json() == {"verdict": "certified"}
    r = client.get(job["report_html_url"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    listed = client.get(URL, params={"verdict": "certified"}).json()["items"]
    assert [j["id"] for j in listed] == [job_id]


def test_cancel_of_queued_job_cancels_it_and_cancel_again_is_409(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    job_id = client.post(URL, json=json_body()).json()["id"]
    r = client.post(f"{URL}/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "canceled"
    body = assert_problem(client.post(f"{URL}/{job_id}/cancel"), 409)
    assert "cannot cancel" in body["detail"]
    assert_problem(client.post(f"{URL}/nope/cancel"), 404)


def test_cancel_of_running_job_requests_cancel(make_client: AppFactory) -> None:
    app, client, _ = make_client()
    job_id = client.post(URL, json=json_body()).json()["id"]
    app.state.store.claim(job_id, worker_id="w", lease_s=60)
    r = client.post(f"{URL}/{job_id}/cancel")
    assert r.status_code == 202
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True


def test_delete_then_get_is_404(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    job_id = client.post(URL, json=json_body()).json()["id"]
    assert client.delete(f"{URL}/{job_id}").status_code == 204
    assert_problem(client.get(f"{URL}/{job_id}"), 404)
    assert_problem(client.delete(f"{URL}/{job_id}"), 404)
    assert client.get(URL).json()["items"] == []


def test_list_pages_with_cursor_without_duplicates(make_client: AppFactory) -> None:
    app, client, _ = make_client()
    store: JobStore = app.state.store
    ids = [
        store.create_job(
            tenant="default",
            model_ref="a" * 64,
            data_ref="b" * 64,
            options={},
            model_format="json",
            data_format="json",
            queue="cpu",
        ).id
        for _ in range(25)
    ]
    seen: list[str] = []
    params: dict[str, object] = {"limit": 10}
    pages = 0
    while True:
        page = client.get(URL, params=params).json()
        seen += [j["id"] for j in page["items"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert pages == 3 and seen == list(reversed(ids))
    assert_problem(client.get(URL, params={"cursor": "garbage"}), 422)
    assert_problem(client.get(URL, params={"limit": 0}), 422)
    assert client.get(URL, params={"status": "running"}).json()["items"] == []


def test_tenants_see_only_their_own_jobs(make_client: AppFactory) -> None:
    _, client, _ = make_client(api_keys=f"alice:{ALICE_KEY},bob:{BOB_KEY}")
    alice, bob = {"X-API-Key": ALICE_KEY}, {"X-API-Key": BOB_KEY}
    job_id = client.post(URL, json=json_body(), headers=alice).json()["id"]
    assert client.get(f"{URL}/{job_id}", headers=alice).status_code == 200
    assert_problem(client.get(f"{URL}/{job_id}", headers=bob), 404)
    assert_problem(client.post(f"{URL}/{job_id}/cancel", headers=bob), 404)
    assert_problem(client.delete(f"{URL}/{job_id}", headers=bob), 404)
    assert client.get(URL, headers=bob).json()["items"] == []
    assert [j["id"] for j in client.get(URL, headers=alice).json()["items"]] == [job_id]


def test_missing_or_wrong_key_is_401_with_www_authenticate(make_client: AppFactory) -> None:
    _, client, _ = make_client(api_keys=f"alice:{ALICE_KEY}")
    r = client.get(URL)
    body = assert_problem(r, 401)
    assert "missing" in body["detail"] and "X-API-Key" in r.headers["www-authenticate"]
    body = assert_problem(client.get(URL, headers={"X-API-Key": "wrong-key-0000000000"}), 401)
    assert body["detail"] == "invalid API key"


def test_key_stored_in_the_database_authenticates(make_client: AppFactory) -> None:
    from service.config import hash_api_key

    app, client, _ = make_client()
    app.state.store.add_api_key(tenant="carol", key_sha256=hash_api_key("carol-key-000000000000"))
    assert_problem(client.get(URL), 401)
    r = client.get(URL, headers={"X-API-Key": "carol-key-000000000000"})
    assert r.status_code == 200


def test_request_id_is_echoed_or_created(client: object, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    assert isinstance(client, TestClient)
    r = client.get("/healthz", headers={"X-Request-ID": "req-42"})
    assert r.headers["x-request-id"] == "req-42"
    r = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert (
        r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32
    )


def test_submission_is_kept_when_the_broker_refuses_it(make_client: AppFactory) -> None:
    app, client, _ = make_client()

    def broken(job: object) -> None:
        raise ConnectionError("broker down")

    from service.deps import get_dispatcher

    app.dependency_overrides[get_dispatcher] = lambda: broken
    r = client.post(URL, json=json_body())
    assert r.status_code == 202
    assert client.get(r.headers["location"]).json()["status"] == "queued"


def test_validation_over_the_time_limit_is_a_413(make_client: AppFactory) -> None:
    _, client, dispatch = make_client(validation_timeout_s=1e-9)
    body = assert_problem(client.post(URL, json=json_body()), 413)
    assert body["type"] == "urn:plcert:problem:validation-timeout"
    assert dispatch.sent == []


def test_submit_list_and_cancel_on_both_databases(make_client: AppFactory, store_url: str) -> None:
    _, client, dispatch = make_client(database_url=store_url)
    job_id = client.post(URL, json=json_body()).json()["id"]
    assert [j["id"] for j in client.get(URL).json()["items"]] == [job_id]
    assert client.post(f"{URL}/{job_id}/cancel").json()["status"] == "canceled"
    assert dispatch.sent == [job_id]
