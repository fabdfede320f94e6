"""Python clients of plcert's HTTP API: :class:`PlcertClient` (blocking) and
:class:`AsyncPlcertClient` (asyncio), method for method the same, on httpx.

::

    from service.client import PlcertClient

    with PlcertClient("http://127.0.0.1:8000", api_key=None) as client:
        job = client.submit("model.onnx", "data.npz", {"budget": "fast"})
        job = client.wait(job.id, on_progress=lambda f, stage: print(f"{f:4.0%} {stage}"))
        report = client.report(job.id)          # plcore.report.schema.Report (pydantic)
        print(report.verdict, report.gd.rate)

    report = client.certify(spec, "sklearn:diabetes?n=32", {"budget": "fast"})  # all three

Methods: ``submit``, ``estimate``, ``get``, ``wait``, ``report``, ``report_html``, ``certify``,
``cancel``, ``delete``, ``list``. Jobs are ``service.schemas.CertificationJob``, pages
``CertificationList``, reports ``plcore.report.schema.Report``.

``model`` is a path to a ``.onnx`` or ``.json`` file, ONNX bytes, or a JSON model spec (a
mapping). ``data`` is a path to a ``.npz`` / ``.npy`` / ``.csv`` / ``.json`` file, ``.npz``
bytes, a mapping ``{"X": [...], "y": [...]}``, or a named dataset ``"sklearn:NAME[?n=..]"``. A
JSON spec with inline or named data goes as a JSON body; anything with files goes as a
multipart upload (a named dataset beside an ONNX model is loaded locally and uploaded as
``.npz``).

Retries and timeouts: ``timeout`` bounds each HTTP request. Answers 429, 502, 503 and 504 are
sent again up to ``retries`` times, after the answer's ``Retry-After`` (else an exponential
backoff); network errors are retried for reads and for submissions, which always carry an
``Idempotency-Key`` (a new random one unless given) that every retry repeats, so a submission
whose answer was lost is never queued twice. Errors: :mod:`service.client.errors`.
"""

from service.client.aio import AsyncPlcertClient
from service.client.core import TERMINAL, RetryPolicy
from service.client.errors import (
    JobFailed,
    JobTimeout,
    PlcertClientError,
    PlcertHTTPError,
)
from service.client.sync import PlcertClient
from service.schemas import CertificationJob, CertificationList, CostEstimateOut

__all__ = [
    "TERMINAL",
    "AsyncPlcertClient",
    "CertificationJob",
    "CertificationList",
    "CostEstimateOut",
    "JobFailed",
    "JobTimeout",
    "PlcertClient",
    "PlcertClientError",
    "PlcertHTTPError",
    "RetryPolicy",
]
