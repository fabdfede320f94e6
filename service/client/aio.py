"""``AsyncPlcertClient``: the asyncio client, method for method the same as
:class:`service.client.PlcertClient` (callbacks stay plain functions)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from plcore.report.schema import Report
from service.client import core
from service.client.core import Call, DataSource, ModelSource, ProgressCallback, RetryPolicy
from service.client.errors import JobFailed
from service.schemas import CertificationJob, CertificationList, CostEstimateOut


class AsyncPlcertClient:
    """The async twin of :class:`~service.client.PlcertClient` (same arguments, same methods,
    awaited); use it as ``async with AsyncPlcertClient(url) as client: ...``."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.retry = RetryPolicy(retries, backoff, max_backoff, max_retry_after)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def __aenter__(self) -> AsyncPlcertClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self.http.request(call.method, call.path, **call.kwargs)
            except httpx.TransportError:
                delay = self.retry.after_error(call, attempt)
                if delay is None:
                    raise
            else:
                delay = self.retry.after_response(response, attempt)
                if delay is None:
                    return core.checked(response)
            attempt += 1
            await asyncio.sleep(delay)

    async def submit(
        self,
        model: ModelSource,
        data: DataSource,
        options: Mapping[str, Any] | None = None,
        *,
        weights: str | Path | bytes | None = None,
        idempotency_key: str | None = None,
    ) -> CertificationJob:
        """Submit a job (always with an Idempotency-Key, reused on retries); returns it queued."""
        key = idempotency_key or core.new_idempotency_key()
        call = core.submission_call(
            core.JOBS, model, data, options, weights=weights, idempotency_key=key
        )
        return CertificationJob.model_validate_json((await self._send(call)).content)

    async def estimate(
        self,
        model: ModelSource,
        data: DataSource,
        options: Mapping[str, Any] | None = None,
        *,
        weights: str | Path | bytes | None = None,
    ) -> CostEstimateOut:
        """The estimated time and memory of a job (nothing queued)."""
        call = core.submission_call(
            core.ESTIMATES, model, data, options, weights=weights, idempotency_key=None
        )
        return CostEstimateOut.model_validate_json((await self._send(call)).content)

    async def get(self, job_id: str) -> CertificationJob:
        """The job's current state."""
        response = await self._send(core.get_call(core.job_path(job_id)))
        return CertificationJob.model_validate_json(response.content)

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        on_progress: ProgressCallback | None = None,
        on_update: Callable[[CertificationJob], None] | None = None,
    ) -> CertificationJob:
        """Poll until the job ends (see ``PlcertClient.wait``).

        Raises:
            JobTimeout: ``timeout`` seconds passed first.
        """
        follow = core.Follower(
            job_id, timeout=timeout, on_progress=on_progress, on_update=on_update
        )
        while True:
            job = await self.get(job_id)
            if follow.done(job):
                return job
            await asyncio.sleep(poll_s)

    async def report(self, job_id: str) -> Report:
        """The typed report of a succeeded job."""
        response = await self._send(core.get_call(core.job_path(job_id, "/report")))
        return Report.model_validate_json(response.content)

    async def report_html(self, job_id: str) -> str:
        """The HTML report of a succeeded job."""
        return (await self._send(core.get_call(core.job_path(job_id, "/report.html")))).text

    async def certify(
        self,
        model: ModelSource,
        data: DataSource,
        options: Mapping[str, Any] | None = None,
        *,
        weights: str | Path | bytes | None = None,
        timeout: float | None = None,
        poll_s: float = 0.5,
        on_progress: ProgressCallback | None = None,
    ) -> Report:
        """Submit, wait and return the report.

        Raises:
            JobFailed: the job failed or was canceled.
            JobTimeout: ``timeout`` seconds passed first.
        """
        job = await self.submit(model, data, options, weights=weights)
        job = await self.wait(job.id, timeout=timeout, poll_s=poll_s, on_progress=on_progress)
        if job.status != "succeeded":
            raise JobFailed(job)
        return await self.report(job.id)

    async def cancel(self, job_id: str) -> CertificationJob:
        """Ask to cancel; returns the job."""
        response = await self._send(Call("POST", core.job_path(job_id, "/cancel")))
        return CertificationJob.model_validate_json(response.content)

    async def delete(self, job_id: str) -> None:
        """Delete the job and its reports."""
        await self._send(Call("DELETE", core.job_path(job_id)))

    async def list(
        self,
        *,
        status: str | None = None,
        verdict: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> CertificationList:
        """One page of jobs, newest first."""
        response = await self._send(core.list_call(status, verdict, limit, cursor))
        return CertificationList.model_validate_json(response.content)
