"""The client's errors, one tree::

    PlcertClientError
    ├── PlcertHTTPError     an error answer of the API (its RFC 9457 problem+json fields)
    ├── JobFailed           a job ended failed or canceled where a report was expected
    └── JobTimeout          ``wait`` gave up before the job ended

Network failures that outlast the retries are httpx's own (``httpx.TransportError`` and its
subclasses: ``ConnectError``, ``ReadTimeout``, ...), raised unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

PROBLEM_TYPE_PREFIX = "urn:plcert:problem:"


class PlcertClientError(Exception):
    """Base of every error the client raises itself."""


class PlcertHTTPError(PlcertClientError):
    """An error answer of the API.

    Attributes:
        status: the HTTP status code.
        type: the problem type URI, e.g. ``urn:plcert:problem:job-not-found`` (``about:blank``
            for plain HTTP errors).
        code: the last part of a plcert problem type (``job-not-found``), else None.
        title, detail, instance: the problem's fields.
        errors: the validation errors of a 422 (``[{loc, msg, type}]``), else None.
        retry_after: the ``Retry-After`` header in seconds, when the answer had one.
        problem: the whole problem+json body (extension members included, e.g. ``queued``).
    """

    def __init__(
        self, status: int, problem: Mapping[str, Any], *, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.problem = dict(problem)
        self.type = str(self.problem.get("type") or "about:blank")
        self.title = str(self.problem.get("title") or "HTTP error")
        self.detail = str(self.problem.get("detail") or "")
        self.instance: str | None = self.problem.get("instance")
        errors = self.problem.get("errors")
        self.errors: list[dict[str, Any]] | None = list(errors) if errors else None
        self.retry_after = retry_after
        super().__init__(f"HTTP {status} {self.title}: {self.detail}".rstrip(": "))

    @property
    def code(self) -> str | None:
        """``job-not-found`` for ``urn:plcert:problem:job-not-found``; None otherwise."""
        if self.type.startswith(PROBLEM_TYPE_PREFIX):
            return self.type[len(PROBLEM_TYPE_PREFIX) :]
        return None

    @classmethod
    def from_response(cls, response: httpx.Response) -> PlcertHTTPError:
        """The error of a 4xx/5xx answer; a body that is not a JSON object becomes the detail."""
        try:
            problem = response.json()
            if not isinstance(problem, dict):
                raise ValueError
        except ValueError:
            problem = {"title": response.reason_phrase, "detail": response.text[:500]}
        return cls(response.status_code, problem, retry_after=retry_after_s(response))


class JobFailed(PlcertClientError):
    """The job ended ``failed`` or ``canceled``; ``job`` is its final state, ``error`` the
    problem object that ended it (None for a canceled job)."""

    def __init__(self, job: Any) -> None:
        self.job = job
        self.error: dict[str, Any] | None = (
            job.error.model_dump() if getattr(job, "error", None) is not None else None
        )
        why = f": {self.error.get('detail', '')}" if self.error else ""
        super().__init__(f"job {job.id} {job.status}{why}")


class JobTimeout(PlcertClientError):
    """``wait`` gave up before the job ended (the job keeps running on the server)."""


def retry_after_s(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header as seconds (delta-seconds form), or None."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: plcert never sends one; fall back to the backoff
    return max(0.0, seconds)
