"""``PlcertClient``: the blocking client (see :mod:`service.client` for an example)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from plcore.report.schema import Report
from service.client import core
from service.client.core import Call, DataSource, ModelSource, ProgressCallback, RetryPolicy
from service.client.errors import JobFailed
from service.schemas import CertificationJob, CertificationList, CostEstimateOut


class PlcertClient:
    """Submit certification jobs to a plcert server, follow them, fetch typed reports.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``X-API-Key`` (None: a server without keys).
        timeout: seconds for each HTTP request (connect, read, write, pool).
        retries, backoff, max_backoff, max_retry_after: :class:`RetryPolicy` (429/502/503/504
            answers and network errors of safe calls are retried, honouring ``Retry-After``).
        transport: an httpx transport (tests, proxies); default: a plain HTTP connection pool.
    """

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.retry = RetryPolicy(retries, backoff, max_backoff, max_retry_after)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> PlcertClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self.http.request(call.method, call.path, **call.kwargs)
            except httpx.TransportError:
                delay = self.retry.after_error(call, attempt)
                if delay is None:
                    raise
            else:
                delay = self.retry.after_response(response, attempt)
                if delay is None:
                    return core.checked(response)
            attempt += 1
            time.sleep(delay)

    # ----- jobs -----------------------------------------------------------------------------

    def submit(
        self,
        model: ModelSource,
        data: DataSource,
        options: Mapping[str, Any] | None = None,
        *,
        weights: str | Path | bytes | None = None,
        idempotency_key: str | None = None,
    ) -> CertificationJob:
        """Submit a job; returns it queued (202). Every submission carries an
        ``Idempotency-Key`` (``idempotency_key``, or a new random one), sent unchanged on each
        retry, so a retry after a lost answer gives the same job, never a second one."""
        key = idempotency_key or core.new_idempotency_key()
        call = core.submission_call(
            core.JOBS, model, data, options, weights=weights, idempotency_key=key
        )
        return CertificationJob.model_validate_json(self._send(call).content)

    def estimate(
        self,
        model: ModelSource,
        data: DataSource,
        options: Mapping[str, Any] | None = None,
        *,
        weights: str | Path | bytes | None = None,
    ) -> CostEstimateOut:
        """The estimated time and memory of a job (``POST /v1/estimates``; nothing queued)."""
        call = core.submission_call(
            core.ESTIMATES, model, data, options, weights=weights, idempotency_key=None
        )
        return CostEstimateOut.model_validate_json(self._send(call).content)

    def get(self, job_id: str) -> CertificationJob:
        """The job's current state (status, progress, verdict, error)."""
        response = self._send(core.get_call(core.job_path(job_id)))
        return CertificationJob.model_validate_json(response.content)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        on_progress: ProgressCallback | None = None,
        on_update: Callable[[CertificationJob], None] | None = None,
    ) -> CertificationJob:
        """Poll every ``poll_s`` until the job is succeeded, failed or canceled; return it.

        ``on_progress(fraction, stage)`` is called whenever either changes, ``on_update(job)``
        on every poll.

        Raises:
            JobTimeout: ``timeout`` seconds passed first (the job keeps running).
        """
        follow = core.Follower(
            job_id, timeout=timeout, on_progress=on_progress, on_update=on_update
        )
        while True:
            job = self.get(job_id)
            if follow.done(job):
                return job
            time.sleep(poll_s)

    def report(self, job_id: str) -> Report:
        """The typed report of a succeeded job (409 ``report-not-ready`` before)."""
        response = self._send(core.get_call(core.job_path(job_id, "/report")))
        return Report.model_validate_json(response.content)

    def report_html(self, job_id: str) -> str:
        """The self-contained HTML report of a succeeded job."""
        return self._send(core.get_call(core.job_path(job_id, "/report.html"))).text

    def certify(
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
        """Submit, wait and return the report: what ``plcore.certify`` does, on the server.

        Raises:
            JobFailed: the job failed or was canceled.
            JobTimeout: ``timeout`` seconds passed first.
        """
        job = self.submit(model, data, options, weights=weights)
        job = self.wait(job.id, timeout=timeout, poll_s=poll_s, on_progress=on_progress)
        if job.status != "succeeded":
            raise JobFailed(job)
        return self.report(job.id)

    def cancel(self, job_id: str) -> CertificationJob:
        """Ask to cancel; returns the job (canceled, or running with ``cancel_requested``).
        A finished job answers 409."""
        response = self._send(Call("POST", core.job_path(job_id, "/cancel")))
        return CertificationJob.model_validate_json(response.content)

    def delete(self, job_id: str) -> None:
        """Delete the job and its reports (a later ``get`` raises a 404)."""
        self._send(Call("DELETE", core.job_path(job_id)))

    def list(
        self,
        *,
        status: str | None = None,
        verdict: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> CertificationList:
        """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""
        response = self._send(core.list_call(status, verdict, limit, cursor))
        return CertificationList.model_validate_json(response.content)
