"""End to end: a width study through the API and two real `plcert worker` processes (Redis,
PostgreSQL): one Celery task per point in a group, shared by the workers, then the final task
that assembles the result."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.service.e2e_support import TINY_DATA, TINY_SPEC, wait_until
from tests.service.test_e2e_distributed import Cluster, cluster  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_study_points_are_shared_by_the_workers_and_assembled(
    cluster: Cluster,  # noqa: F811
) -> None:
    body = {
        "model_spec": {**TINY_SPEC, "widths": [8]},
        "data": TINY_DATA,
        "widths": [8, 16, 32],
        "seeds": [0, 1],
        "options": {"budget": "fast", "validation_steps": 5},
    }
    r = httpx.post(f"{cluster.url}/v1/studies", json=body, timeout=60)
    assert r.status_code == 202, r.text
    sid = r.json()["id"]

    def finished() -> dict[str, object] | None:
        job = httpx.get(f"{cluster.url}/v1/studies/{sid}", timeout=30).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    job = wait_until(finished, timeout=240, interval=0.5, what=f"study {sid} to finish")
    assert job["status"] == "succeeded", (job, cluster.worker_logs()[-3000:])
    result = job["result"]
    assert len(result["rows"]) == 6 and result["hessian_norm_slope"]["estimate"] is not None
    assert all(row["verdict"] is not None for row in result["rows"])
    page = httpx.get(f"{cluster.url}/v1/studies/{sid}/report.html", timeout=30)
    assert page.status_code == 200 and "Slope of the Hessian norm" in page.text

    pattern = re.compile(rf"study {sid} point (\d+) \(width \d+\) succeeded")
    per_worker = [sorted(pattern.findall(w.log_text())) for w in cluster.workers]
    assert sorted(i for points in per_worker for i in points) == [str(i) for i in range(6)]
    assert all(per_worker), per_worker  # both workers computed points
    assert sum(f"study {sid} succeeded" in w.log_text() for w in cluster.workers) == 1
