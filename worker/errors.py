"""How a failed job reports its error.

The mapping of exceptions to a job's ``error`` ({type, title, detail, status}) lives in ONE
place, :func:`service.errors.job_error`, shared with the HTTP API (same ``type`` URNs as its
problem+json answers). The worker adds only the errors that Celery raises: the soft time limit.
Unexpected exceptions become ``internal`` without their message; the traceback goes to the
worker log only.
"""

from __future__ import annotations

from typing import Any

from service.errors import TYPE_PREFIX, job_error

__all__ = ["job_error", "time_limit_error"]


def time_limit_error(limit_s: float, setting: str = "PLCERT_JOB_TIME_LIMIT_S") -> dict[str, Any]:
    """The error of a job stopped by the time limit of ``limit_s`` seconds (set by ``setting``)."""
    return {
        "type": TYPE_PREFIX + "time-limit",
        "title": "Time limit exceeded",
        "detail": f"the job ran longer than the limit of {limit_s:g} s ({setting}); "
        "try budget 'fast', fewer samples, or a GPU worker",
        "status": 500,
    }
