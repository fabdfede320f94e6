"""Regression tests of the security and reliability findings of issue 10 (one test per finding)."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import anyio
import pytest
from starlette.types import Message

from service.config import hash_api_key
from tests.service.asgi_support import post_scope
from tests.service.conftest import ALICE_KEY, AppFactory, assert_problem, json_body, multipart_files

URL = "/v1/certifications"


@pytest.mark.parametrize("device", ["cudaX", "cuda:-1", "mps", "meta", "cuda:01", "CPU", ""])
def test_an_unknown_device_is_refused_at_submit(make_client: AppFactory, device: str) -> None:
    _, client, dispatch = make_client()
    r = client.post(URL, json=json_body(options={"budget": "fast", "device": device}))
    body = assert_problem(r, 422)
    assert "options.device" in body["detail"]
    multipart = client.post(
        URL, files=multipart_files(), data={"options": json.dumps({"device": device})}
    )
    assert_problem(multipart, 422)
    assert dispatch.sent == []


@pytest.mark.parametrize(("device", "queue"), [("cuda:1", "gpu"), ("auto", "cpu"), ("cpu", "cpu")])
def test_a_known_device_is_accepted_and_routed(
    make_client: AppFactory, device: str, queue: str
) -> None:
    app, client, _ = make_client()
    r = client.post(URL, json=json_body(options={"budget": "fast", "device": device}))
    assert r.status_code == 202, r.text
    settings = app.state.settings
    assert r.json()["queue"] == (settings.queue_gpu if queue == "gpu" else settings.queue_cpu)


def _cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor(["9999-12-31T23:00:00-23:00", "z"]),  # overflows once shifted to UTC
        _cursor(["0001-01-01T00:00:00+23:00", "z"]),
        "0" * 200,  # matches no cursor the API produces
        _cursor(["2026-01-01T00:00:00+00:00", 5]),
    ],
)
def test_a_bad_list_cursor_is_a_422_not_a_500(make_client: AppFactory, cursor: str) -> None:
    _, client, _ = make_client()
    body = assert_problem(client.get(URL, params={"cursor": cursor}), 422)
    assert body["type"].endswith(("invalid-cursor", "validation"))


def test_the_cursor_is_described_in_the_openapi(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    params = client.get("/openapi.json").json()["paths"][URL]["get"]["parameters"]
    cursor = next(p for p in params if p["name"] == "cursor")
    schema = cursor["schema"]["anyOf"][0]
    assert schema["pattern"].startswith("^WyI") and schema["maxLength"] == 256
    first = client.post(URL, json=json_body())
    client.post(URL, json=json_body(options={"budget": "fast", "seed": 1}))
    assert first.status_code == 202
    page = client.get(URL, params={"limit": 1}).json()
    assert page["next_cursor"] is not None
    assert client.get(URL, params={"cursor": page["next_cursor"]}).status_code == 200


def test_two_model_parts_are_refused(make_client: AppFactory) -> None:
    _, client, dispatch = make_client()
    files = multipart_files()
    parts = [("model", files["model"]), ("model", files["model"]), ("data", files["data"])]
    body = assert_problem(client.post(URL, files=parts), 422)
    assert "['model'] are given more than once" in body["detail"]
    assert dispatch.sent == []


def test_too_many_form_fields_is_a_documented_422(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    fields = {f"f{i}": "x" for i in range(6)}
    body = assert_problem(client.post(URL, files=multipart_files(), data=fields), 422)
    assert "unusable multipart body" in body["detail"]
    multipart = client.get("/openapi.json").json()["paths"][URL]["post"]["requestBody"]
    assert multipart["content"]["multipart/form-data"]["schema"]["additionalProperties"] is False


def test_options_on_a_job_lists_every_method_served_there(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    r = client.options(f"{URL}/0123456789abcdef")
    assert_problem(r, 405)
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}
    listing = client.request("PUT", URL)
    assert_problem(listing, 405)
    assert set(listing.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_a_trailing_slash_is_not_redirected_to_the_host_header(make_client: AppFactory) -> None:
    _, client, _ = make_client(api_keys=f"alice:{ALICE_KEY}")
    r = client.get(f"{URL}/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert_problem(r, 404)
    assert "evil.example" not in r.text and "location" not in r.headers


def test_metrics_need_a_key_when_keys_are_configured(make_client: AppFactory) -> None:
    _, client, _ = make_client(api_keys=f"alice:{ALICE_KEY}")
    assert_problem(client.get("/metrics"), 401)
    assert_problem(client.get("/metrics", headers={"X-API-Key": "wrong"}), 401)
    ok = client.get("/metrics", headers={"X-API-Key": ALICE_KEY})
    assert ok.status_code == 200 and "plcert_" in ok.text


def test_a_body_that_stalls_after_the_headers_is_answered_408(make_client: AppFactory) -> None:
    app, _, _ = make_client(body_read_timeout_s=0.2)
    sent: list[Message] = []
    stalled = anyio.Event()

    async def receive() -> Message:
        if not stalled.is_set():
            stalled.set()
            return {"type": "http.request", "body": b'{"model_spec": ', "more_body": True}
        await anyio.sleep(60)  # the client sends nothing more
        raise AssertionError("the server waited for the stalled body")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = post_scope(URL)

    async def run() -> float:
        started = time.monotonic()
        with anyio.fail_after(10):
            await app(scope, receive, send)
        return time.monotonic() - started

    elapsed = anyio.run(run)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 408
    assert elapsed < 5


def _secured(doc: dict[str, Any]) -> list[str]:
    return [
        f"{method} {path}"
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if op.get("security") or "401" in op["responses"]
    ]


def test_the_openapi_describes_the_auth_mode_the_server_is_in(make_client: AppFactory) -> None:
    app, client, _ = make_client()
    open_doc = client.get("/openapi.json").json()
    assert _secured(open_doc) == [] and "securitySchemes" not in open_doc["components"]
    app.state.store.add_api_key(tenant="alice", key_sha256=hash_api_key(ALICE_KEY))  # live
    keyed = client.get("/openapi.json").json()
    assert "post /v1/certifications" in _secured(keyed) and "get /metrics" in _secured(keyed)
    assert "get /healthz" not in _secured(keyed)
    assert keyed["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    assert_problem(client.get(URL), 401)
    _, env_client, _ = make_client(api_keys=f"alice:{ALICE_KEY}")
    assert _secured(env_client.get("/openapi.json").json()) == _secured(keyed)


def test_the_submit_answer_links_to_every_job_route(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    doc = client.get("/openapi.json").json()
    links = doc["paths"][URL]["post"]["responses"]["202"]["links"]
    by_id = {
        op["operationId"]: (method, path)
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }
    targets = {by_id[link["operationId"]] for link in links.values()}
    job = f"{URL}/{{job_id}}"
    assert targets == {
        ("get", job),
        ("delete", job),
        ("post", f"{job}/cancel"),
        ("get", f"{job}/report"),
        ("get", f"{job}/report.html"),
    }
    assert all(link["parameters"] == {"job_id": "$response.body#/id"} for link in links.values())
    device = doc["components"]["schemas"]["CertifyOptions"]["properties"]["device"]
    assert re.fullmatch(device["pattern"], "cuda:3") and not re.fullmatch(device["pattern"], "mps")
    sizes = doc["components"]["schemas"]["CertifyOptions"]["properties"]["batch_sizes"]
    assert sizes["items"]["minimum"] == 1
    refused = client.post(URL, json=json_body(options={"batch_sizes": [0]}))
    assert_problem(refused, 422)


def test_delete_removes_the_uploaded_files(make_client: AppFactory) -> None:
    app, client, _ = make_client()
    job = client.post(URL, files=multipart_files()).json()
    stored = app.state.store.get_job(job["id"])
    artifacts = app.state.artifacts
    assert artifacts.exists(stored.model_ref) and artifacts.exists(stored.data_ref)
    assert client.delete(f"{URL}/{job['id']}").status_code == 204
    assert not artifacts.exists(stored.model_ref) and not artifacts.exists(stored.data_ref)
    assert_problem(client.get(f"{URL}/{job['id']}"), 404)
