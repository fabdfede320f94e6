"""Regression tests of the security and reliability findings of issue 10 (one test per finding)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.service.conftest import AppFactory, assert_problem, json_body, multipart_files

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
