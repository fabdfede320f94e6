"""What the sync and the async client share, without I/O: the requests they send, when to retry
and after how long, and how a job is followed.

Each client method builds a :class:`Call` here and hands it to its own ``_send`` (a loop of
``request`` and ``sleep``, the only part that differs between the two clients).
"""

from __future__ import annotations

import io
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from service.client.errors import JobTimeout, PlcertHTTPError, retry_after_s
from service.schemas import CertificationJob

TERMINAL = ("succeeded", "failed", "canceled")
JOBS = "/v1/certifications"
ESTIMATES = "/v1/estimates"

ModelSource = str | Path | bytes | Mapping[str, Any]
"""A path to a ``.onnx`` or ``.json`` file, ONNX bytes, or a JSON model spec (a mapping)."""
DataSource = str | Path | bytes | Mapping[str, Any]
"""A path to a ``.npz``/``.npy``/``.csv``/``.json`` file, ``.npz`` bytes, a mapping
``{"X": [...], "y": [...]}``, or a named dataset ``"sklearn:NAME[?n=..]"``."""
ProgressCallback = Callable[[float, str], None]
"""Called with (fraction in [0, 1], stage) whenever either changes (as ``plcore.certify``)."""

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Call:
    """One API request. ``retry_on_network_error``: safe to send again when the connection
    failed (reads, and submissions, which always carry an Idempotency-Key)."""

    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    retry_on_network_error: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    """When a request is sent again, and after how long.

    A 429, 502, 503 or 504 answer, or (for calls marked safe) a network error, is retried up to
    ``retries`` times. The wait is the answer's ``Retry-After`` when it has one, else
    ``backoff * 2**attempt`` (attempt 0, 1, ...) with +-25 % jitter, at most ``max_backoff``.
    A ``Retry-After`` longer than ``max_retry_after`` is not waited for: the error is raised.
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2.0**attempt)
        return base * random.uniform(0.75, 1.25)

    def after_response(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before sending again, or None to return/raise this answer."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
            return None
        told = retry_after_s(response)
        if told is None:
            return self._backoff(attempt)
        return told if told <= self.max_retry_after else None

    def after_error(self, call: Call, attempt: int) -> float | None:
        """Seconds to wait before sending again after a network error, or None to raise it."""
        if not call.retry_on_network_error or attempt >= self.retries:
            return None
        return self._backoff(attempt)


def checked(response: httpx.Response) -> httpx.Response:
    """``response`` when it is a success; raise :class:`PlcertHTTPError` otherwise."""
    if response.status_code >= 400:
        raise PlcertHTTPError.from_response(response)
    return response


# ----- requests -----------------------------------------------------------------------------


def submission_call(
    path: str,
    model: ModelSource,
    data: DataSource,
    options: Mapping[str, Any] | None,
    *,
    weights: str | Path | bytes | None,
    idempotency_key: str | None,
) -> Call:
    """The POST of a submission (or of an estimate, without a key): a JSON body for a spec with
    inline or named data, else a multipart upload (a named dataset beside an ONNX model is
    loaded here and uploaded as ``.npz``)."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    spec = spec_of(model)
    if spec is not None and weights is None and (isinstance(data, Mapping) or is_named(data)):
        body = {"model_spec": spec, "data": data, "options": dict(options or {})}
        kwargs: dict[str, Any] = {"json": body, "headers": headers}
    else:
        files = {"model": _model_part(model, spec), "data": _data_part(data)}
        if weights is not None:
            files["weights"] = _file_part(weights, "weights.safetensors")
        form = {"options": json.dumps(dict(options or {}))}
        kwargs = {"files": files, "data": form, "headers": headers}
    return Call("POST", path, kwargs, retry_on_network_error=idempotency_key is not None)


def new_idempotency_key() -> str:
    """A fresh key: one per logical submission, sent again unchanged on each retry."""
    return uuid.uuid4().hex


def list_call(status: str | None, verdict: str | None, limit: int, cursor: str | None) -> Call:
    params: dict[str, Any] = {"limit": limit}
    for name, value in (("status", status), ("verdict", verdict), ("cursor", cursor)):
        if value is not None:
            params[name] = value
    return Call("GET", JOBS, {"params": params}, retry_on_network_error=True)


def job_path(job_id: str, suffix: str = "") -> str:
    """``/v1/certifications/{job_id}{suffix}`` (the id percent-encoded)."""
    return f"{JOBS}/{quote(job_id, safe='')}{suffix}"


def get_call(path: str) -> Call:
    return Call("GET", path, retry_on_network_error=True)


def is_named(data: object) -> bool:
    """``sklearn:NAME`` style names (a string with a colon that is not an existing path)."""
    return isinstance(data, str) and ":" in data and not Path(data).exists()


def spec_of(model: ModelSource) -> dict[str, Any] | None:
    """The JSON spec when ``model`` is a mapping or a ``.json`` file; None for ONNX."""
    if isinstance(model, Mapping):
        return dict(model)
    if isinstance(model, bytes):
        return None
    path = Path(model)
    if path.suffix.lower() == ".json":
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None  # let the server explain what is wrong with the file
        return spec if isinstance(spec, dict) else None
    return None


def _model_part(model: ModelSource, spec: dict[str, Any] | None) -> tuple[str, bytes, str]:
    if spec is not None:
        return ("model.json", json.dumps(spec).encode(), "application/json")
    assert not isinstance(model, Mapping)
    return _file_part(model, "model.onnx")


def _file_part(source: str | Path | bytes, default_name: str) -> tuple[str, bytes, str]:
    if isinstance(source, bytes):
        return (default_name, source, "application/octet-stream")
    path = Path(source)
    return (path.name, path.read_bytes(), "application/octet-stream")


def _data_part(data: DataSource) -> tuple[str, bytes, str]:
    if isinstance(data, Mapping):
        return ("data.json", json.dumps(dict(data)).encode(), "application/json")
    if is_named(data):
        return ("data.npz", _named_as_npz(str(data)), "application/octet-stream")
    return _file_part(data, "data.npz")


def _named_as_npz(name: str) -> bytes:
    """A named dataset (``sklearn:NAME``), loaded here and packed as .npz for an upload."""
    import numpy as np

    from plcore import load_dataset

    ds = load_dataset(name)
    buf = io.BytesIO()
    np.savez(buf, X=ds.X.cpu().numpy(), y=ds.y.cpu().numpy())
    return buf.getvalue()


# ----- following a job ----------------------------------------------------------------------


class Follower:
    """Polls' bookkeeping for ``wait``: calls the callbacks on change, says when to stop."""

    def __init__(
        self,
        job_id: str,
        *,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        on_update: Callable[[CertificationJob], None] | None,
    ) -> None:
        self.job_id, self.timeout = job_id, timeout
        self.on_progress, self.on_update = on_progress, on_update
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self._last: tuple[float, str] | None = None

    def done(self, job: CertificationJob) -> bool:
        """Report ``job`` to the callbacks; True when it is terminal.

        Raises:
            JobTimeout: it is not terminal and the deadline has passed.
        """
        if self.on_update is not None:
            self.on_update(job)
        seen = (job.progress.fraction, job.progress.stage)
        if self.on_progress is not None and seen != self._last:
            self.on_progress(*seen)
        self._last = seen
        if job.status in TERMINAL:
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise JobTimeout(f"job {self.job_id} still {job.status} after {self.timeout:g} s")
        return False
