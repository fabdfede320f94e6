"""`PlcertClient` and `AsyncPlcertClient` against a real `plcert serve` process (API and worker):
jobs end to end with progress callbacks, typed reports, problem+json errors, and a submission
whose answer is lost and that is sent again with its Idempotency-Key."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from plcore.report.schema import Report
from service.client import AsyncPlcertClient, JobFailed, PlcertClient, PlcertHTTPError
from tests.service.e2e_support import (
    TINY_DATA,
    TINY_SPEC,
    Embedded,
    tiny_npz_bytes,
    tiny_onnx_bytes,
)

pytestmark = [pytest.mark.e2e]

FAST = {"budget": "fast"}
JOB_TIMEOUT_S = 120.0


class Progress:
    """Records what ``on_progress`` was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction: float, stage: str) -> None:
        self.calls.append((fraction, stage))

    def check(self) -> None:
        fractions = [f for f, _ in self.calls]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0, self.calls
        assert any(0.0 < f < 1.0 for f in fractions), self.calls  # seen while running
        assert len(set(self.calls)) == len(self.calls), "called again without a change"
        assert self.calls[-1][1] == "done", self.calls


def check_report(report: Report, n_samples: int) -> None:
    assert isinstance(report, Report)
    assert report.verdict in ("certified", "not_certified", "inconclusive")
    assert report.problem.n_samples == n_samples
    assert report.validation is not None and report.validation.steps > 0


def test_sync_client_runs_a_json_job_end_to_end(plcert_server: Embedded) -> None:
    progress = Progress()
    with PlcertClient(plcert_server.url) as client:
        job = client.submit(TINY_SPEC, TINY_DATA, FAST)
        assert job.status == "queued"
        done = client.wait(job.id, timeout=JOB_TIMEOUT_S, poll_s=0.1, on_progress=progress)
        assert done.status == "succeeded", done
        report = client.report(job.id)
        check_report(report, len(TINY_DATA["X"]))
        assert report.verdict == done.verdict
        assert report.verdict in client.report_html(job.id)
        assert job.id in [j.id for j in client.list(status="succeeded", limit=100).items]
        client.delete(job.id)
        with pytest.raises(PlcertHTTPError, match="HTTP 404") as err:
            client.get(job.id)
    progress.check()
    assert err.value.status == 404 and err.value.code == "job-not-found"
    assert err.value.type == "urn:plcert:problem:job-not-found" and job.id in err.value.detail


def test_async_client_runs_a_json_job_and_estimates_an_onnx_upload(
    plcert_server: Embedded,
) -> None:
    progress = Progress()

    async def run() -> tuple[Report, Any]:
        async with AsyncPlcertClient(plcert_server.url) as client:
            estimate = await client.estimate(tiny_onnx_bytes(), tiny_npz_bytes(), FAST)
            report = await client.certify(
                TINY_SPEC, TINY_DATA, FAST, timeout=JOB_TIMEOUT_S, poll_s=0.1, on_progress=progress
            )
            return report, estimate

    report, estimate = asyncio.run(run())
    check_report(report, len(TINY_DATA["X"]))
    progress.check()
    assert estimate.fits and estimate.size["n_samples"] == len(TINY_DATA["X"])


def test_a_4xx_answer_raises_with_the_problem_fields(plcert_server: Embedded) -> None:
    wrong_width = {**TINY_SPEC, "input_dim": 3}  # the data has 2 features
    with PlcertClient(plcert_server.url) as client, pytest.raises(PlcertHTTPError) as err:
        client.submit(wrong_width, TINY_DATA, FAST)
    assert err.value.status == 422
    assert err.value.type.startswith("urn:plcert:problem:") and err.value.code
    assert "3" in err.value.detail and err.value.problem["status"] == 422

    async def bad_options() -> None:
        async with AsyncPlcertClient(plcert_server.url) as client:
            await client.submit(TINY_SPEC, TINY_DATA, {"budget": "forever"})

    with pytest.raises(PlcertHTTPError) as aerr:
        asyncio.run(bad_options())
    assert aerr.value.status == 422 and aerr.value.errors
    assert any("budget" in str(e["loc"]) for e in aerr.value.errors), aerr.value.errors


def test_certify_raises_job_failed_for_a_canceled_job(plcert_server: Embedded) -> None:
    with PlcertClient(plcert_server.url) as client:
        job = client.submit(TINY_SPEC, TINY_DATA, {"budget": "fast", "validation_steps": 20_000})
        canceled = client.cancel(job.id)
        assert canceled.status == "canceled" or canceled.cancel_requested
        final = client.wait(job.id, timeout=JOB_TIMEOUT_S, poll_s=0.2)
        assert final.status == "canceled"
        with pytest.raises(PlcertHTTPError) as err:
            client.report(job.id)
        assert err.value.status == 409 and err.value.code == "report-not-ready"
        assert str(JobFailed(final)) == f"job {job.id} canceled"


class LoseFirstSubmitAnswer(httpx.HTTPTransport):
    """A real connection whose first submission answer never arrives: the server stores the
    job, then the client sees a dropped connection (as when a proxy or the network fails)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path == "/v1/certifications":
            self.keys.append(request.headers.get("Idempotency-Key"))
            if len(self.keys) == 1:
                response.read()
                response.close()
                raise httpx.ReadError("connection reset before the answer", request=request)
        return response


def test_a_submission_retried_after_a_lost_answer_creates_one_job(
    plcert_server: Embedded,
) -> None:
    transport = LoseFirstSubmitAnswer()
    with PlcertClient(plcert_server.url, backoff=0.05, transport=transport) as client:
        before = {j.id for j in client.list(limit=100).items}
        job = client.submit(TINY_SPEC, TINY_DATA, FAST)
        after = {j.id for j in client.list(limit=100).items}
        client.cancel(job.id)
    assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1] is not None
    assert after - before == {job.id}


def test_the_same_idempotency_key_twice_gives_the_same_job(plcert_server: Embedded) -> None:
    async def twice() -> list[Any]:
        async with AsyncPlcertClient(plcert_server.url) as client:
            first = await client.submit(TINY_SPEC, TINY_DATA, FAST, idempotency_key="ci-run-42")
            again = await client.submit(TINY_SPEC, TINY_DATA, FAST, idempotency_key="ci-run-42")
            other = {**TINY_SPEC, "seed": 7}
            with pytest.raises(PlcertHTTPError) as err:
                await client.submit(other, TINY_DATA, FAST, idempotency_key="ci-run-42")
            await client.cancel(first.id)
            return [first, again, err.value]

    first, again, reuse = asyncio.run(twice())
    assert again.id == first.id
    assert reuse.status == 422 and reuse.code == "idempotency-key-reuse"
