"""Request and response bodies of ``/v1/studies`` (the width study, issue 12)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from plcore.models.spec import ModelSpec
from plcore.options import CertifyOptions
from plcore.report.study_schema import StudyResult
from service.schemas import API_PREFIX, InlineData, JobError, JobStatus, Progress
from service.store.studies import StudyRecord

STUDY_EXAMPLE: dict[str, Any] = {
    "model_spec": {"type": "mlp", "input_dim": 2, "widths": [16], "output_dim": 1},
    "data": {"X": [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, -1.0]], "y": [0.0, 1.0, 0.5, -0.5]},
    "widths": [16, 64, 256],
    "seeds": [0, 1],
    "options": {"budget": "fast"},
}


class StudyCreate(BaseModel):
    """A width study (or a depth study): a base spec, data and the sizes to study."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": STUDY_EXAMPLE})

    model_spec: ModelSpec = Field(description="Base JSON model spec (MLP shorthand or layers)")
    data: InlineData | str = Field(
        description='{"X": [...], "y": [...]}, or a named dataset like "sklearn:digits?n=64"'
    )
    kind: Literal["width", "depth"] = Field("width", description="What varies")
    widths: list[int] = Field(
        default_factory=list, description="Hidden widths of a width study (1-16 values)"
    )
    depths: list[int] = Field(
        default_factory=list, description="Hidden layers of a depth study (MLP shorthand)"
    )
    seeds: list[int] | None = Field(
        None, description="Initialisation seeds per size (default: the spec's seed; up to 8)"
    )
    depth: int | None = Field(None, description="Width study: hidden layers at every width")
    width: int | None = Field(None, description="Depth study: the width of every layer")
    mode: Literal["certify", "quantities"] = Field(
        "certify",
        description="certify: a full certification per point; quantities: Hessian norm, "
        "kernel and GD run only (no mu, R or verdict)",
    )
    options: CertifyOptions = Field(
        default_factory=lambda: CertifyOptions(), description="Options of every certification"
    )


class StudyPoints(BaseModel):
    """How many points are in each state."""

    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int


class StudyLinks(BaseModel):
    self: str
    report_html: str
    cancel: str


class StudyJob(BaseModel):
    """A study as the API shows it; ``result`` once it succeeded."""

    id: str
    status: JobStatus
    kind: Literal["width", "depth"]
    mode: Literal["certify", "quantities"]
    progress: Progress
    points: StudyPoints
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    error: JobError | None
    result: StudyResult | None = Field(
        description="The study (hessian_norm_slope, rows, ...) once it succeeded"
    )
    report_html_url: str | None
    links: StudyLinks

    @classmethod
    def from_record(
        cls, study: StudyRecord, counts: dict[str, int], result: StudyResult | None
    ) -> StudyJob:
        base = f"{API_PREFIX}/studies/{study.id}"
        done = counts["succeeded"] + counts["failed"] + counts["canceled"]
        total = max(study.n_points, 1)
        if study.is_terminal:
            stage = study.status
        elif done == study.n_points:
            stage = "assembling the study"
        else:
            stage = f"{done} of {study.n_points} points done, {counts['running']} running"
        return cls(
            id=study.id,
            status=study.status,  # type: ignore[arg-type]
            kind=study.kind,  # type: ignore[arg-type]
            mode=study.mode,  # type: ignore[arg-type]
            progress=Progress(
                fraction=1.0 if study.status == "succeeded" else min(done / total, 0.99),
                stage=stage,
            ),
            points=StudyPoints(total=study.n_points, **counts),
            created_at=study.created_at,
            started_at=study.started_at,
            finished_at=study.finished_at,
            cancel_requested=study.cancel_requested,
            error=JobError.model_validate(study.error) if study.error else None,
            result=result,
            report_html_url=f"{base}/report.html" if study.html_ref else None,
            links=StudyLinks(self=base, report_html=f"{base}/report.html", cancel=f"{base}/cancel"),
        )
