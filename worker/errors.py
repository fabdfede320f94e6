"""How a failed job reports its error.

The mapping of exceptions to a job's ``error`` ({type, title, detail, status}) lives in ONE
place, :func:`service.errors.job_error`, shared with the HTTP API (same ``type`` URNs as its
problem+json answers). The worker adds only the errors of its own limits: the soft time limit
(raised by Celery) and the job's memory limit (:mod:`worker.memory`).
Unexpected exceptions become ``internal`` without their message; the traceback goes to the
worker log only.
"""

from __future__ import annotations

from typing import Any

from service.errors import TYPE_PREFIX, job_error

__all__ = ["job_error", "out_of_memory_error", "time_limit_error"]


def time_limit_error(limit_s: float, setting: str = "PLCERT_JOB_TIME_LIMIT_S") -> dict[str, Any]:
    """The error of a job stopped by the time limit of ``limit_s`` seconds (set by ``setting``)."""
    return {
        "type": TYPE_PREFIX + "time-limit",
        "title": "Time limit exceeded",
        "detail": f"the job ran longer than the limit of {limit_s:g} s ({setting}); "
        "try budget 'fast', fewer samples, or a GPU worker",
        "status": 500,
    }


def out_of_memory_error(limit_bytes: int) -> dict[str, Any]:
    """The error of a job whose allocation failed under the memory limit of ``limit_bytes``."""
    return {
        "type": TYPE_PREFIX + "out-of-memory",
        "title": "Out of memory",
        "detail": f"out of memory: the job needed more than {limit_bytes / 2**30:.2f} GiB "
        "(PLCERT_WORKER_MEMORY_LIMIT); use fewer samples, a smaller model or budget 'fast' "
        "(POST /v1/estimates shows the memory terms)",
        "status": 500,
    }
