"""POST /v1/estimates (dry run) and the memory refusal of POST /v1/certifications."""

from __future__ import annotations

from plcore import CertifyOptions, load_model
from plcore.data import load_dataset
from plcore.estimate.cost import estimate_for
from tests.service.conftest import (
    AppFactory,
    assert_problem,
    json_body,
    mlp_spec,
    multipart_files,
    small_data,
)

ESTIMATES = "/v1/estimates"
CERTIFICATIONS = "/v1/certifications"


def _direct_estimate(body: dict) -> object:
    """The same estimate computed in-process from the loaded model and data."""
    import json

    model = load_model(body["model_spec"])
    data = load_dataset(json.dumps(body["data"]).encode(), format="json")
    return estimate_for(model, data, CertifyOptions(**body["options"]))


def test_estimate_answers_200_with_time_and_memory_and_queues_nothing(
    make_client: AppFactory,
) -> None:
    app, client, dispatch = make_client()
    body = json_body()
    r = client.post(ESTIMATES, json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    expected = _direct_estimate(body)
    assert got["peak_memory_bytes"] == expected.peak_memory_bytes  # type: ignore[attr-defined]
    assert got["time_s"] == expected.time_s  # type: ignore[attr-defined]
    assert got["time_s"] <= got["time_upper_s"]
    assert got["fits"] is True
    assert got["worker_memory_limit_bytes"] == app.state.settings.worker_memory_limit
    X, _ = small_data()
    assert got["size"]["n_samples"] == X.shape[0] and got["size"]["N"] == X.shape[0]
    assert got["size"]["n_params"] == load_model(body["model_spec"]).n_params
    assert got["stages"][0]["name"] == "initial quantities"
    assert dispatch.sent == []
    assert client.get(CERTIFICATIONS).json()["items"] == []


def test_estimate_accepts_multipart_like_a_submission(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    r = client.post(ESTIMATES, files=multipart_files(), data={"options": '{"budget": "fast"}'})
    assert r.status_code == 200, r.text
    assert r.json()["budget"] == "fast"


def test_estimate_of_bad_input_is_a_422_like_a_submission(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    r = client.post(ESTIMATES, json=json_body(model_spec=mlp_spec(input_dim=5)))
    assert_problem(r, 422)


def test_estimate_reports_a_job_over_the_worker_limit_as_not_fitting(
    make_client: AppFactory,
) -> None:
    _, client, _ = make_client(worker_memory_limit=2**20)
    r = client.post(ESTIMATES, json=json_body())
    assert r.status_code == 200, r.text
    assert r.json()["fits"] is False


def test_submission_over_the_worker_memory_limit_is_refused_with_the_numbers(
    make_client: AppFactory,
) -> None:
    body = json_body()
    peak = _direct_estimate(body).peak_memory_bytes  # type: ignore[attr-defined]
    _, client, dispatch = make_client(worker_memory_limit=peak - 1)
    r = client.post(CERTIFICATIONS, json=body)
    problem = assert_problem(r, 422)
    assert problem["type"].endswith("job-exceeds-worker-memory")
    assert "PLCERT_WORKER_MEMORY_LIMIT" in problem["detail"]
    assert f"{peak / 2**30:.2f} GiB" in problem["detail"]
    assert problem["estimated_peak_memory_bytes"] == peak
    assert problem["worker_memory_limit_bytes"] == peak - 1
    assert dispatch.sent == []


def test_submission_at_the_worker_memory_limit_is_accepted(make_client: AppFactory) -> None:
    body = json_body()
    peak = _direct_estimate(body).peak_memory_bytes  # type: ignore[attr-defined]
    _, client, dispatch = make_client(worker_memory_limit=peak)
    r = client.post(CERTIFICATIONS, json=body)
    assert r.status_code == 202, r.text
    assert len(dispatch.sent) == 1


def test_openapi_documents_the_estimates_route(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    schema = client.get("/openapi.json").json()
    op = schema["paths"][ESTIMATES]["post"]
    assert "200" in op["responses"] and "422" in op["responses"]
    assert "CostEstimateOut" in schema["components"]["schemas"]
