"""POST/GET /v1/comparisons on a real app (dispatch off): inputs, members, tenancy."""

from __future__ import annotations

import json
from typing import Any

from tests.service.conftest import (
    ALICE_KEY,
    BOB_KEY,
    AppFactory,
    assert_problem,
    mlp_spec,
    multipart_files,
    small_data,
)

URL = "/v1/comparisons"


def _body(n_models: int = 2, **over: Any) -> dict[str, Any]:
    X, y = small_data()
    body = {
        "model_specs": [mlp_spec(widths=(8 * (i + 1),)) for i in range(n_models)],
        "data": {"X": X.tolist(), "y": y.tolist()},
        "options": {"budget": "fast"},
    }
    return {**body, **over}


def test_a_comparison_stores_one_queued_job_per_model(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    r = client.post(URL, json=_body(3))
    assert r.status_code == 202, r.text
    view = r.json()
    assert r.headers["Location"] == f"{URL}/{view['id']}"
    assert view["status"] == "queued" and view["ranking"] is None
    assert [m["name"] for m in view["members"]] == [f"model_specs[{i}]" for i in range(3)]
    assert len({m["model_sha256"] for m in view["members"]}) == 3
    listed = {j["id"] for j in client.get("/v1/certifications").json()["items"]}
    assert listed == {m["job_id"] for m in view["members"]}
    assert client.get(f"{URL}/{view['id']}").json()["members"] == view["members"]
    body = assert_problem(client.get(f"{URL}/{view['id']}/report.html"), 409)
    assert body["type"].endswith(":report-not-ready")


def test_multipart_takes_several_model_files(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    base = multipart_files()
    files = [
        ("model", ("a.json", json.dumps(mlp_spec(widths=(8,))).encode(), "application/json")),
        ("model", ("b.json", json.dumps(mlp_spec(widths=(32,))).encode(), "application/json")),
        ("data", base["data"]),
    ]
    r = client.post(URL, files=files, data={"options": '{"budget": "fast"}'})
    assert r.status_code == 202, r.text
    assert [m["name"] for m in r.json()["members"]] == ["a.json", "b.json"]
    assert r.json()["data"] == "data.npz"


def test_bad_inputs_are_422_and_store_nothing(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    cases = [
        _body(0),  # empty list
        _body(1),  # one model is no comparison
        _body(9),  # over the cap of 8
        {**_body(2), "extra": 1},
    ]
    for body in cases:
        problem = assert_problem(client.post(URL, json=body), 422)
        assert problem["errors"], problem
    bad_model = _body(2)
    bad_model["model_specs"][1]["input_dim"] = 5  # does not fit the data's 3 inputs
    problem = assert_problem(client.post(URL, json=bad_model), 422)
    assert problem["detail"].startswith("model 1 (model_specs[1])")
    one_file = [("model", multipart_files()["model"]), ("data", multipart_files()["data"])]
    assert_problem(client.post(URL, files=one_file), 422)
    assert_problem(client.post(URL, content=b"x", headers={"content-type": "text/plain"}), 415)
    assert client.get("/v1/certifications").json()["items"] == []


def test_another_tenant_gets_404_and_sees_none_of_the_jobs(make_client: AppFactory) -> None:
    _, client, _ = make_client(api_keys=f"alice:{ALICE_KEY},bob:{BOB_KEY}")
    alice, bob = {"X-API-Key": ALICE_KEY}, {"X-API-Key": BOB_KEY}
    view = client.post(URL, json=_body(2), headers=bob).json()
    for path in (f"{URL}/{view['id']}", f"{URL}/{view['id']}/report.html"):
        problem = assert_problem(client.get(path, headers=alice), 404)
        assert problem["type"].endswith(":comparison-not-found")
    assert client.get("/v1/certifications", headers=alice).json()["items"] == []
    assert client.get(f"{URL}/{view['id']}", headers=bob).status_code == 200
    assert_problem(client.get(f"{URL}/{view['id']}"), 401)
