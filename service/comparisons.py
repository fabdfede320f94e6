"""Comparisons: reading a submission of several models, storing it as member jobs, and the view.

A comparison is one certification job per model on the same data and options (each an
ordinary job: listed, cancelable, with its own report), sent to the workers as one Celery group,
and a row that names them (:mod:`service.store.comparisons`). Its status and ranking are derived
from the member jobs when it is read (:func:`comparison_view`), with
:func:`plcore.report.compare.rank`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from plcore.report.compare import MAX_CANDIDATES, Candidate, rank
from plcore.report.schema import Report
from service.errors import ProblemException
from service.schemas import API_PREFIX, Comparison, ComparisonCreateJSON, ComparisonMember
from service.schemas import ComparisonLinks as Links
from service.store.artifacts import ArtifactStore
from service.store.jobs import ComparisonRecord, JobRecord, JobStore
from service.submission import (
    Submission,
    _invalid,
    _options_from,
    data_bytes,
    parse_json_body,
    put_submission_files,
    restore_purged_files,
    spec_bytes,
)
from service.validation import check_device, data_format_for, model_format_for

MIN_CANDIDATES = 2


async def read_comparison(request: Request) -> tuple[list[Submission], list[str], str]:
    """(one submission per model, their names, the dataset's name) from a JSON body
    ``{"model_specs", "data", "options"}`` or a multipart body with several ``model`` files, one
    ``data`` file and an ``options`` field; 415 for another content type."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        body = await parse_json_body(await request.body(), ComparisonCreateJSON)
        data, data_format = data_bytes(body.data)
        subs = [
            Submission(spec_bytes(spec), "json", data, data_format, None, body.options)
            for spec in body.model_specs
        ]
        names = [f"model_specs[{i}]" for i in range(len(subs))]
        data_name = body.data if isinstance(body.data, str) else f"inline data ({len(body.data.X)})"
    elif ctype == "multipart/form-data":
        subs, names, data_name = await _read_multipart(request)
    else:
        raise ProblemException(
            415,
            f"content type {ctype or '(none)'!r} is not accepted; send application/json "
            "(model_specs, data) or multipart/form-data (several model files, one data file)",
            code="unsupported-media-type",
        )
    check_device(subs[0].options.device)
    return subs, names, data_name


async def _read_multipart(request: Request) -> tuple[list[Submission], list[str], str]:
    try:
        form = await request.form(max_files=MAX_CANDIDATES + 2, max_fields=2)
    except StarletteHTTPException as exc:
        raise _invalid([], f"unusable multipart body: {exc.detail}", "multipart") from None
    try:
        unknown = sorted(set(form.keys()) - {"model", "data", "options"})
        if unknown:
            raise _invalid([unknown[0]], f"unknown form fields {unknown}", "extra_forbidden")
        models = form.getlist("model")
        if not MIN_CANDIDATES <= len(models) <= MAX_CANDIDATES:
            raise _invalid(
                ["model"],
                f"{len(models)} model files: a comparison takes {MIN_CANDIDATES} to "
                f"{MAX_CANDIDATES} (repeat the 'model' field)",
                "too_short" if len(models) < MIN_CANDIDATES else "too_long",
            )
        datas = form.getlist("data")
        if len(datas) != 1 or not isinstance(datas[0], UploadFile):
            raise _invalid(["data"], "give exactly one 'data' file", "missing")
        raw_models: list[tuple[bytes, str | None]] = []
        for part in models:
            if not isinstance(part, UploadFile):
                raise _invalid(["model"], "every 'model' must be a file part")
            raw_models.append((await part.read(), part.filename))
        data = await datas[0].read()
        data_name = datas[0].filename or "data"
        raw_options = form.get("options")
        if isinstance(raw_options, UploadFile):
            raw_options = (await raw_options.read()).decode("utf-8", "replace")
    finally:
        await form.close()
    from plcore.json_text import loads_strict

    try:
        options = _options_from(loads_strict(raw_options) if raw_options else {})
    except ValueError as exc:
        raise _invalid(["options"], f"options is not valid JSON: {exc}", "json_invalid") from None
    data_format = data_format_for(data_name, data)
    subs = [
        Submission(raw, model_format_for(name, raw), data, data_format, None, options)
        for raw, name in raw_models
    ]
    names = [name or f"model {i + 1}" for i, (_, name) in enumerate(raw_models)]
    return subs, names, data_name


def store_comparison(
    subs: list[Submission],
    names: list[str],
    data_name: str,
    *,
    tenant: str,
    queue: str,
    store: JobStore,
    artifacts: ArtifactStore,
) -> tuple[ComparisonRecord, list[JobRecord]]:
    """Write every model's files and create the member jobs and the comparison at once."""
    fields = [put_submission_files(sub, queue=queue, artifacts=artifacts) for sub in subs]
    record, jobs = store.create_comparison(
        tenant=tenant,
        data_name=data_name,
        jobs=fields,
        names=names,
        model_sha256s=[hashlib.sha256(sub.model).hexdigest() for sub in subs],
    )
    for sub, job in zip(subs, jobs, strict=True):
        restore_purged_files(sub, job, artifacts)
    return record, jobs


def _status(jobs: list[JobRecord | None]) -> str:
    done = [j for j in jobs if j is None or j.is_terminal]
    if len(done) < len(jobs):
        return "queued" if all(j is not None and j.status == "queued" for j in jobs) else "running"
    return "succeeded" if any(j is not None and j.status == "succeeded" for j in jobs) else "failed"


def comparison_view(
    record: ComparisonRecord, store: JobStore, artifacts: ArtifactStore
) -> tuple[Comparison, dict[int, Report]]:
    """The public view of a comparison, and the reports of its succeeded members by index
    (read from the artifact store once every member ended)."""
    jobs = [store.get_job(job_id, tenant=record.tenant) for job_id in record.job_ids]
    status = _status(jobs)
    members = [
        ComparisonMember(
            index=i,
            name=str(m["name"]),
            model_sha256=str(m["model_sha256"]),
            job_id=str(m["job_id"]),
            status=j.status if j is not None else "deleted",
            verdict=j.verdict if j is not None else None,
        )
        for i, (m, j) in enumerate(zip(record.members, jobs, strict=True))
    ]
    reports: dict[int, Report] = {}
    ranking = None
    if status in ("succeeded", "failed"):
        candidates = []
        for member, job in zip(members, jobs, strict=True):
            report = None
            if job is not None and job.status == "succeeded" and job.report_ref:
                report = Report.model_validate_json(artifacts.get(job.report_ref))
                reports[member.index] = report
            candidates.append(_candidate(member, job, report))
        ranking = rank(candidates)
    base = f"{API_PREFIX}/comparisons/{record.id}"
    view = Comparison(
        id=record.id,
        status=status,  # type: ignore[arg-type]
        created_at=record.created_at,
        data=record.data_name,
        members=members,
        ranking=ranking,
        links=Links(self=base, report_html=f"{base}/report.html"),
    )
    return view, reports


def _candidate(member: ComparisonMember, job: JobRecord | None, report: Report | None) -> Any:
    job_url = f"{API_PREFIX}/certifications/{member.job_id}"
    error = None
    if job is None:
        error = "the job was deleted"
    elif report is None:
        error = (job.error or {}).get("detail") or f"the job {job.status}"
    return Candidate(
        index=member.index,
        name=member.name,
        report=report,
        status=member.status,
        job_id=member.job_id,
        model_sha256=member.model_sha256,
        error=error,
        report_url=f"{job_url}/report" if report is not None else None,
        report_html_url=f"{job_url}/report.html" if report is not None else None,
    )
