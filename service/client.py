"""A small Python client of plcert's HTTP API (what ``plcert submit`` uses).

::

    from service.client import PlcertClient
    client = PlcertClient("http://127.0.0.1:8000", api_key=None)
    job = client.submit("model.onnx", "data.npz", {"budget": "fast"})
    job = client.wait(job["id"])                # polls until succeeded / failed / canceled
    report = client.report(job["id"])           # the report JSON as a dict

``model`` is a path to a ``.onnx`` or ``.json`` file, or a JSON model spec (a mapping).
``data`` is a path to a ``.npz`` / ``.npy`` / ``.csv`` / ``.json`` file, a mapping
``{"X": [...], "y": [...]}``, or a named dataset ``"sklearn:NAME[?n=..]"``. A JSON spec with
inline or named data goes as a JSON body; anything with files goes as a multipart upload (a
named dataset beside an ONNX model is loaded locally and uploaded as ``.npz``).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

TERMINAL = ("succeeded", "failed", "canceled")
API = "/v1/certifications"
ESTIMATES = "/v1/estimates"

ModelSource = str | Path | Mapping[str, Any]
DataSource = str | Path | Mapping[str, Any]


class PlcertHTTPError(Exception):
    """An error answer of the API; ``problem`` is its RFC 9457 problem+json body."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        title = self.problem.get("title") or "HTTP error"
        detail = self.problem.get("detail") or ""
        super().__init__(f"HTTP {status} {title}: {detail}".rstrip(": "))


class JobTimeout(Exception):
    """``wait`` gave up before the job finished."""


def _is_named(data: DataSource) -> bool:
    return isinstance(data, str) and ":" in data and not Path(data).exists()


class PlcertClient:
    """Submit jobs, follow them, fetch their reports (see the module docstring)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> PlcertClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ----- requests -----------------------------------------------------------------------

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                problem = response.json()
                if not isinstance(problem, dict):
                    raise ValueError
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text[:500]}
            raise PlcertHTTPError(response.status_code, problem)
        return response

    def submit(
        self,
        model: ModelSource,
        data: DataSource,
        options: Mapping[str, Any] | None = None,
        *,
        weights: str | Path | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a certification job; returns the queued job (202 answer)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._post_problem(API, model, data, options, weights=weights, headers=headers)

    def estimate(
        self,
        model: ModelSource,
        data: DataSource,
        options: Mapping[str, Any] | None = None,
        *,
        weights: str | Path | None = None,
    ) -> dict[str, Any]:
        """The estimated time and memory of a job (``POST /v1/estimates``; nothing queued)."""
        return self._post_problem(ESTIMATES, model, data, options, weights=weights, headers={})

    def _post_problem(
        self,
        path: str,
        model: ModelSource,
        data: DataSource,
        options: Mapping[str, Any] | None,
        *,
        weights: str | Path | None,
        headers: dict[str, str],
    ) -> dict[str, Any]:
        spec = _spec_of(model)
        if spec is not None and weights is None and (isinstance(data, Mapping) or _is_named(data)):
            body = {"model_spec": spec, "data": data, "options": dict(options or {})}
            r = self.http.post(path, json=body, headers=headers)
            return dict(self._check(r).json())

        files: dict[str, tuple[str, bytes, str]] = {}
        if spec is not None:
            files["model"] = ("model.json", json.dumps(spec).encode(), "application/json")
        else:
            model_path = Path(str(model))
            files["model"] = (model_path.name, model_path.read_bytes(), "application/octet-stream")
        files["data"] = _data_part(data)
        if weights is not None:
            wpath = Path(weights)
            files["weights"] = (wpath.name, wpath.read_bytes(), "application/octet-stream")
        form = {"options": json.dumps(dict(options or {}))}
        r = self.http.post(path, files=files, data=form, headers=headers)
        return dict(self._check(r).json())

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's current state."""
        return dict(self._check(self.http.get(f"{API}/{job_id}")).json())

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is succeeded, failed or canceled; return its final state.

        Raises:
            JobTimeout: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_update is not None:
                on_update(job)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(f"job {job_id} still {job['status']} after {timeout:g} s")
            time.sleep(poll_s)

    def report(self, job_id: str) -> dict[str, Any]:
        """The JSON report of a succeeded job."""
        return dict(self._check(self.http.get(f"{API}/{job_id}/report")).json())

    def report_html(self, job_id: str) -> str:
        """The HTML report of a succeeded job."""
        return self._check(self.http.get(f"{API}/{job_id}/report.html")).text

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask to cancel; returns the job (canceled, or running with cancel_requested)."""
        return dict(self._check(self.http.post(f"{API}/{job_id}/cancel")).json())

    def delete(self, job_id: str) -> None:
        """Delete the job and its report (a later GET answers 404)."""
        self._check(self.http.delete(f"{API}/{job_id}"))

    def list(self, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest jobs (first page)."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return list(self._check(self.http.get(API, params=params)).json()["items"])


def _spec_of(model: ModelSource) -> dict[str, Any] | None:
    """The JSON spec when ``model`` is a mapping or a ``.json`` file; None for ONNX."""
    if isinstance(model, Mapping):
        return dict(model)
    path = Path(model)
    if path.suffix.lower() == ".json":
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None  # let the server explain what is wrong with the file
        return spec if isinstance(spec, dict) else None
    return None


def _data_part(data: DataSource) -> tuple[str, bytes, str]:
    if isinstance(data, Mapping):
        return ("data.json", json.dumps(dict(data)).encode(), "application/json")
    if _is_named(data):
        return ("data.npz", _named_as_npz(str(data)), "application/octet-stream")
    path = Path(data)
    return (path.name, path.read_bytes(), "application/octet-stream")


def _named_as_npz(name: str) -> bytes:
    """A named dataset (``sklearn:NAME``), loaded here and packed as .npz for an upload."""
    import numpy as np

    from plcore import load_dataset

    ds = load_dataset(name)
    buf = io.BytesIO()
    np.savez(buf, X=ds.X.cpu().numpy(), y=ds.y.cpu().numpy())
    return buf.getvalue()
