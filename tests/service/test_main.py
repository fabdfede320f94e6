"""The app's OpenAPI document names every operation after its route function."""

from __future__ import annotations

from fastapi.testclient import TestClient

EXPECTED = {
    ("post", "/v1/certifications"): "create_certification",
    ("get", "/v1/certifications"): "list_certifications",
    ("get", "/v1/certifications/{job_id}"): "get_certification",
    ("delete", "/v1/certifications/{job_id}"): "delete_certification",
    ("get", "/v1/certifications/{job_id}/report"): "get_report",
    ("get", "/v1/certifications/{job_id}/report.html"): "get_report_html",
    ("post", "/v1/certifications/{job_id}/cancel"): "cancel_certification",
    ("post", "/v1/estimates"): "create_estimate",
}


def test_operation_ids_are_the_route_names_and_unique(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    ids = {
        (method, path): op["operationId"]
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    assert {key: ids[key] for key in EXPECTED} == EXPECTED
    assert len(set(ids.values())) == len(ids)
    assert not any("_v1_" in i for i in ids.values())
