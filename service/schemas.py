"""Request and response bodies of the HTTP API (one class per role)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from plcore.models.spec import ModelSpec
from plcore.options import CertifyOptions
from plcore.report.compare import MAX_CANDIDATES, RankingEntry
from service.store.jobs import JobRecord
from service.webhooks.urls import MAX_URL_LENGTH

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
API_PREFIX = "/v1"


class ProblemDetails(BaseModel):
    """An RFC 9457 problem detail (media type application/problem+json)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI of the problem kind; 'about:blank' for plain HTTP errors")
    title: str = Field(description="Short summary of the problem kind")
    status: int = Field(description="HTTP status code")
    detail: str = Field(description="What went wrong in this request")
    instance: str | None = Field(None, description="Path of the request")
    errors: list[dict[str, Any]] | None = Field(
        None, description="Validation errors: [{loc, msg, type}] (422 only)"
    )


_PROBLEM_DESCRIPTIONS = {
    401: "Missing or invalid API key",
    404: "No such resource (or another tenant's job)",
    409: "The job is not in a state that allows this",
    413: "Request body over the upload limit",
    415: "Unsupported content type",
    422: "Invalid request, model, data or options",
    429: "Too many requests (rate-limited) or too many unfinished jobs (tenant-quota); "
    "see Retry-After",
    500: "Internal error (no details exposed; see the log by request id)",
    503: "A dependency is not ready",
    507: "No space left to store the upload; nothing was stored (insufficient-storage)",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem+json answers with these statuses."""
    return {
        code: {
            "model": ProblemDetails,
            "description": _PROBLEM_DESCRIPTIONS.get(code, "Error"),
            "content": {
                "application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/ProblemDetails"}
                }
            },
        }
        for code in codes
    }


RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def limited_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """:func:`problem_responses` for ``codes`` plus the 429 of the tenancy limits, with its
    ``Retry-After`` header (routes behind ``service.deps.rate_limit``)."""
    out = problem_responses(*codes, 429)
    out[429] = {**out[429], "headers": RETRY_AFTER_HEADER}
    return out


class InlineData(BaseModel):
    """Training data given inline: X (n x d or n x C x H x W) and y (n or n x k)."""

    model_config = ConfigDict(extra="forbid")

    X: list[Any] = Field(description="Inputs as nested lists")
    y: list[Any] = Field(description="Targets as a list or nested lists")


class CertificationCreateJSON(BaseModel):
    """JSON form of a submission: a model spec, data inline or by name, and options."""

    model_config = ConfigDict(extra="forbid")

    model_spec: ModelSpec = Field(description="JSON model specification (MLP shorthand or layers)")
    data: InlineData | str = Field(
        description='{"X": [...], "y": [...]}, or a named dataset like "sklearn:digits?n=64"'
    )
    options: CertifyOptions = Field(
        default_factory=lambda: CertifyOptions(), description="Certification options"
    )
    callback_url: str | None = Field(
        None,
        max_length=MAX_URL_LENGTH,
        description="http(s) URL that receives a signed event (Standard Webhooks) when the job "
        "succeeds, fails or is canceled; private and loopback addresses are refused",
    )


class Progress(BaseModel):
    """How far a job got."""

    fraction: float = Field(ge=0, le=1, description="0 at submission, 1 when done")
    stage: str = Field(
        description="The current stage: its name, or 'name: step' with the step within it"
    )


class JobLinks(BaseModel):
    """Related URLs (relative to the API root)."""

    self: str
    report: str
    report_html: str
    cancel: str
    deliveries: str


class JobError(BaseModel):
    """Why a job failed (the problem object of the error that ended it)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    detail: str
    status: int | None = None


class CertificationJob(BaseModel):
    """A certification job as the API shows it."""

    id: str
    status: JobStatus
    progress: Progress
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None
    report_url: str | None = Field(description="JSON report, once the job succeeded")
    report_html_url: str | None = Field(description="HTML report, once the job succeeded")
    verdict: str | None = Field(description="certified, not_certified or inconclusive")
    attempt: int = Field(description="How many times a worker started the job")
    cancel_requested: bool
    queue: str
    options: dict[str, Any]
    callback_url: str | None = Field(None, description="Where the terminal event goes")
    webhook_status: str | None = Field(
        None,
        description="The event's delivery: null (none yet), pending, delivered or failed; "
        "the attempts are at links.deliveries",
    )
    links: JobLinks

    @classmethod
    def from_record(cls, job: JobRecord) -> CertificationJob:
        """The public view of a stored job."""
        base = f"{API_PREFIX}/certifications/{job.id}"
        done = job.status == "succeeded"
        return cls(
            id=job.id,
            status=job.status,
            progress=Progress(fraction=job.progress_fraction, stage=job.progress_stage),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error=JobError.model_validate(job.error) if job.error else None,
            report_url=f"{base}/report" if done and job.report_ref else None,
            report_html_url=f"{base}/report.html" if done and job.html_ref else None,
            verdict=job.verdict,
            attempt=job.attempt,
            cancel_requested=job.cancel_requested,
            queue=job.queue,
            options=job.options,
            callback_url=job.callback_url,
            webhook_status=job.webhook_status,
            links=JobLinks(
                self=base,
                report=f"{base}/report",
                report_html=f"{base}/report.html",
                cancel=f"{base}/cancel",
                deliveries=f"{base}/deliveries",
            ),
        )


class CertificationList(BaseModel):
    """One page of jobs, newest first."""

    items: list[CertificationJob]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at end")


class Health(BaseModel):
    """Liveness answer."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Readiness answer: each dependency and whether it is usable."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


class StageEstimate(BaseModel):
    """One stage of the run: typical and worst-case seconds, memory above the baseline."""

    name: str
    seconds: float
    seconds_upper: float
    memory_bytes: int


class CostEstimateOut(BaseModel):
    """What a certification would cost (``POST /v1/estimates``; nothing is queued)."""

    time_s: float = Field(description="Typical wall time, seconds (typical solver iterations)")
    time_upper_s: float = Field(
        description="Wall time if every solver runs to the budget's iteration limits"
    )
    peak_memory_bytes: int = Field(description="Estimated peak resident memory of the worker")
    worker_memory_limit_bytes: int = Field(
        description="Memory a job may use on a worker (PLCERT_WORKER_MEMORY_LIMIT)"
    )
    fits: bool = Field(
        description="peak_memory_bytes <= worker_memory_limit_bytes: a submission is accepted"
    )
    memory: dict[str, int] = Field(description="The terms of the peak, bytes each")
    stages: list[StageEstimate]
    size: dict[str, Any] = Field(
        description="Sizes the estimate uses: n_samples, n_outputs, N, n_params, activations, ..."
    )
    budget: str
    accuracy: str = Field(description="How close measured runs came to the estimate")

    @classmethod
    def from_estimate(cls, estimate: Any, worker_memory_limit: int) -> CostEstimateOut:
        """The public view of a :class:`plcore.estimate.cost.CostEstimate`."""
        raw = estimate.as_dict()
        return cls(
            **raw,
            worker_memory_limit_bytes=worker_memory_limit,
            fits=estimate.peak_memory_bytes <= worker_memory_limit,
        )


class DeliveryAttempt(BaseModel):
    """One delivery attempt of a job's webhook event."""

    attempt: int = Field(description="1 for the first delivery, then one more per retry")
    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status; null if none came")
    error: str | None = Field(
        description="Why the attempt failed (timeout, refused address, redirect...)"
    )
    duration_ms: float
    succeeded: bool = Field(description="True for a 2xx answer")
    response_prefix: str | None = Field(
        description="The first 256 bytes of the receiver's answer, as text"
    )


class DeliveryList(BaseModel):
    """The webhook event of a job and every delivery attempt, first first."""

    job_id: str
    callback_url: str | None
    event_id: str | None = Field(description="The event's webhook-id header (same on retries)")
    event_type: str | None = Field(description="certification.succeeded, .failed or .canceled")
    status: str | None = Field(description="null (no event yet), pending, delivered or failed")
    items: list[DeliveryAttempt]


class WebhookSecretOut(BaseModel):
    """The caller's webhook signing secret (Standard Webhooks, ``whsec_`` + base64)."""

    secret: str
    created_at: datetime


class ComparisonCreateJSON(BaseModel):
    """JSON form of a comparison: several model specs, one dataset, shared options."""

    model_config = ConfigDict(extra="forbid")

    model_specs: list[ModelSpec] = Field(
        min_length=2,
        max_length=MAX_CANDIDATES,
        description=f"2 to {MAX_CANDIDATES} JSON model specifications, certified one job each",
    )
    data: InlineData | str = Field(
        description='{"X": [...], "y": [...]}, or a named dataset like "sklearn:digits?n=64"'
    )
    options: CertifyOptions = Field(
        default_factory=lambda: CertifyOptions(), description="Options of every certification"
    )


class ComparisonMember(BaseModel):
    """One model of a comparison and its certification job."""

    index: int = Field(description="position in the submitted list (0-based)")
    name: str = Field(description="file name, or model_specs[i]")
    model_sha256: str
    job_id: str
    status: JobStatus | Literal["deleted"]
    verdict: str | None = None


class ComparisonLinks(BaseModel):
    """Related URLs (relative to the API root)."""

    self: str
    report_html: str


class Comparison(BaseModel):
    """A comparison as the API shows it; ``ranking`` once every member job ended."""

    id: str
    status: Literal["queued", "running", "succeeded", "failed"] = Field(
        description="succeeded once every member ended and at least one has a report; failed "
        "when none has"
    )
    created_at: datetime
    data: str = Field(description="the dataset: its name, file name or 'inline data'")
    members: list[ComparisonMember]
    ranking: list[RankingEntry] | None = Field(
        description="one entry per model, best first (null until every member ended)"
    )
    links: ComparisonLinks
