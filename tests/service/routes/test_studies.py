"""``/v1/studies``: submit, the points run by the worker functions, result, page, tenancy,
cancel, delete, and 4xx problems for bad input (the Celery path is in test_e2e_studies.py)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.store.studies import StudyRecord, StudyStore
from tests.service.conftest import (
    ALICE_KEY,
    BOB_KEY,
    AppFactory,
    assert_problem,
    mlp_spec,
    small_data,
)
from worker.study_tasks import finish_study, run_point

URL = "/v1/studies"


def study_body(**overrides: Any) -> dict[str, Any]:
    X, y = small_data(n=6, d=3)
    body: dict[str, Any] = {
        "model_spec": mlp_spec(widths=(8,)),
        "data": {"X": X.tolist(), "y": y.tolist()},
        "widths": [8, 16, 32],
        "mode": "quantities",
        "options": {"budget": "fast", "validation_steps": 3},
    }
    body.update(overrides)
    return body


class Recorder:
    def __init__(self) -> None:
        self.sent: list[StudyRecord] = []

    def __call__(self, study: StudyRecord) -> None:
        self.sent.append(study)


def _app(make_client: AppFactory, **overrides: Any) -> tuple[FastAPI, TestClient, Recorder]:
    app, client, _ = make_client(**overrides)
    recorder = Recorder()
    app.state.study_dispatcher = recorder
    return app, client, recorder


def run_all_points(app: FastAPI, study_id: str) -> list[str | None]:
    """What the worker's group of tasks does, in this process, point after point."""
    studies = StudyStore(app.state.store.engine)
    artifacts = app.state.artifacts
    n = studies.get(study_id).n_points  # type: ignore[union-attr]
    return [
        run_point(
            study_id,
            i,
            worker_id="test:1",
            studies=studies,
            artifacts=artifacts,
            settings=app.state.settings,
            send_finish=lambda s: finish_study(s.id, studies=studies, artifacts=artifacts),
        )
        for i in range(n)
    ]


def test_study_runs_point_by_point_and_serves_result_and_page(make_client: AppFactory) -> None:
    app, client, sent = _app(make_client)
    r = client.post(URL, json=study_body(seeds=[0, 1]))
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["Location"] == f"{URL}/{job['id']}"
    assert job["status"] == "queued" and job["points"]["total"] == 6 and job["result"] is None
    assert [s.id for s in sent.sent] == [job["id"]]
    assert_problem(client.get(f"{URL}/{job['id']}/report.html"), 409)

    assert run_all_points(app, job["id"]) == ["succeeded"] * 6
    done = client.get(f"{URL}/{job['id']}").json()
    assert done["status"] == "succeeded" and done["progress"]["fraction"] == 1.0
    assert done["points"]["succeeded"] == 6
    result = done["result"]
    assert set(result["hessian_norm_slope"]) >= {"estimate", "ci_low", "ci_high"}
    assert [(row["width"], row["seed"]) for row in result["rows"]] == [
        (w, s) for w in (8, 16, 32) for s in (0, 1)
    ]
    page = client.get(f"{URL}/{job['id']}/report.html")
    assert page.status_code == 200 and "<h2>Slope of the Hessian norm</h2>" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # a redelivered point, or a second finishing task, changes nothing
    assert run_all_points(app, job["id"]) == [None] * 6
    assert (
        finish_study(
            job["id"], studies=StudyStore(app.state.store.engine), artifacts=app.state.artifacts
        )
        is None
    )


def test_a_failed_point_fails_the_study_with_its_error(make_client: AppFactory) -> None:
    app, client, _ = _app(make_client)
    job = client.post(URL, json=study_body(widths=[8, 16])).json()
    studies = StudyStore(app.state.store.engine)
    with studies.engine.begin() as conn:  # the stored data becomes unreadable
        from sqlalchemy import update

        from service.store.models import studies as table

        conn.execute(update(table).where(table.c.id == job["id"]).values(data_format="npy"))
    assert run_all_points(app, job["id"]) == ["failed", "failed"]
    body = client.get(f"{URL}/{job['id']}").json()
    assert body["status"] == "failed" and body["points"]["failed"] == 2
    assert body["error"]["detail"].startswith("point 0 (width 8, seed 0):")


def test_studies_belong_to_their_tenant(make_client: AppFactory) -> None:
    _, client, _ = _app(make_client, api_keys=f"alice:{ALICE_KEY},bob:{BOB_KEY}")
    r = client.post(URL, json=study_body(), headers={"X-API-Key": ALICE_KEY})
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    assert client.get(f"{URL}/{sid}", headers={"X-API-Key": ALICE_KEY}).status_code == 200
    for path in (f"{URL}/{sid}", f"{URL}/{sid}/report.html"):
        assert_problem(client.get(path, headers={"X-API-Key": BOB_KEY}), 404)
    assert_problem(client.post(f"{URL}/{sid}/cancel", headers={"X-API-Key": BOB_KEY}), 404)
    assert_problem(client.delete(f"{URL}/{sid}", headers={"X-API-Key": BOB_KEY}), 404)
    assert_problem(client.post(URL, json=study_body()), 401)


def test_cancel_a_queued_study_then_delete_it(make_client: AppFactory) -> None:
    app, client, _ = _app(make_client)
    sid = client.post(URL, json=study_body()).json()["id"]
    r = client.post(f"{URL}/{sid}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "canceled"
    assert r.json()["points"]["canceled"] == 3
    assert run_all_points(app, sid) == [None] * 3  # late deliveries do nothing
    assert_problem(client.post(f"{URL}/{sid}/cancel"), 409)
    assert client.delete(f"{URL}/{sid}").status_code == 204
    assert_problem(client.get(f"{URL}/{sid}"), 404)
    assert_problem(client.delete(f"{URL}/{sid}"), 404)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"widths": []}, "widths must not be empty"),
        ({"widths": [8, -4]}, "got [-4]"),
        ({"widths": list(range(1, 18))}, "at most 16 widths"),
        ({"seeds": list(range(9))}, "at most 8 seeds"),
        ({"model_spec": mlp_spec(widths=())}, "no width to scale"),
        ({"model_spec": mlp_spec(input_dim=4)}, "input"),
        ({"kind": "depth", "depths": [1, 2], "model_spec": {
            "type": "layers", "input_shape": [3], "output_dim": 1,
            "layers": [{"type": "linear", "out": 4}, {"type": "linear", "out": 1}]}},
         "MLP shorthand"),
        ({"widths": [8], "extra": 1}, "extra"),
        ({"widths": ["8"]}, "integer"),
    ],
    ids=["empty", "negative", "too-many", "too-many-seeds", "nothing-to-scale", "data-misfit",
         "depth-of-layer-list", "unknown-field", "string-width"],
)  # fmt: skip
def test_bad_input_is_a_422_and_stores_nothing(
    make_client: AppFactory, overrides: dict[str, Any], needle: str
) -> None:
    app, client, sent = _app(make_client)
    body = assert_problem(client.post(URL, json=study_body(**overrides)), 422)
    assert needle in str(body)
    assert sent.sent == []
    with app.state.store.engine.connect() as conn:
        from sqlalchemy import func, select

        from service.store.models import studies

        assert conn.execute(select(func.count()).select_from(studies)).scalar_one() == 0


def test_a_width_over_the_parameter_limit_is_refused(make_client: AppFactory) -> None:
    _, client, _ = _app(make_client, max_params=1000)
    body = assert_problem(client.post(URL, json=study_body(widths=[8, 4096])), 422)
    assert "PLCERT_MAX_PARAMS" in body["detail"]


def test_not_json_and_duplicate_keys_are_refused(make_client: AppFactory) -> None:
    _, client, _ = _app(make_client)
    assert_problem(client.post(URL, content=b"x", headers={"content-type": "text/plain"}), 415)
    raw = b'{"widths": [8], "widths": [16]}'
    r = client.post(URL, content=raw, headers={"content-type": "application/json"})
    assert_problem(r, 422)
