"""The OpenAPI document: FastAPI's, completed where routes cannot say it themselves.

* every 4xx/5xx answer is problem+json (what ``service.errors`` sends);
* the submit route's JSON body model (the route reads its body itself) and a 408 for a body
  that stalls (``BodyReadTimeoutMiddleware``);
* ``options.device`` carries the pattern that the submit check applies, and
  ``options.batch_sizes`` the minimum that CertifyOptions checks;
* links from the submit answer's ``id`` (and from the newest listed job) to the job's routes
  (GET, cancel, report, report.html, DELETE), so that clients and stateful testers can follow
  a job;
* the authentication mode the server is in: with no API key configured every request is
  served, so the document then declares no security scheme and no 401 (:func:`for_auth_mode`).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import TypeAdapter

from service.schemas import API_PREFIX, CertificationCreateJSON
from service.validation import DEVICE_PATTERN

_PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
}
_JOBS = f"{API_PREFIX}/certifications"
_JOB = f"{_JOBS}/{{job_id}}"
JOB_LINKS: dict[str, tuple[str, str]] = {
    "GetJob": (_JOB, "get"),
    "CancelJob": (f"{_JOB}/cancel", "post"),
    "GetReport": (f"{_JOB}/report", "get"),
    "GetReportHtml": (f"{_JOB}/report.html", "get"),
    "DeleteJob": (_JOB, "delete"),
}
"""Link name -> (path, method) of the operations that take the submitted job's ``id``."""


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Add what the routes cannot declare (the module docstring's list) to ``schema``."""
    _add_submit_body(schema)
    _add_job_links(schema)
    _errors_as_problems(schema)
    return schema


def for_auth_mode(schema: dict[str, Any], *, keys_configured: bool) -> dict[str, Any]:
    """``schema`` as it holds with or without API keys (a copy when they differ)."""
    if keys_configured:
        return schema
    out = copy.deepcopy(schema)
    for operations in out.get("paths", {}).values():
        for op in operations.values():
            op.pop("security", None)
            op.get("responses", {}).pop("401", None)
    out.get("components", {}).pop("securitySchemes", None)
    out["info"]["description"] = out["info"].get("description", "") + (
        "\n\nThis server has no API key configured: every request is served as the tenant "
        "`default` (and it listens on loopback only)."
    )
    return out


def _add_submit_body(schema: dict[str, Any]) -> None:
    body_schema = TypeAdapter(CertificationCreateJSON).json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, sub in body_schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components["CertificationCreateJSON"] = body_schema
    from service.schemas import ComparisonCreateJSON
    from service.study_schemas import StudyCreate

    # bodies the routes read themselves (JSON or multipart): referenced by their openapi_extra
    for model in (StudyCreate, ComparisonCreateJSON):
        sub_schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in sub_schema.pop("$defs", {}).items():
            components.setdefault(name, sub)
        components[model.__name__] = sub_schema
    options = components.get("CertifyOptions", {}).get("properties", {})
    if "device" in options:
        options["device"]["pattern"] = DEVICE_PATTERN
    if "items" in options.get("batch_sizes", {}):
        options["batch_sizes"]["items"]["minimum"] = 1  # CertifyOptions' own validator
    submit = schema["paths"][_JOBS]["post"]
    submit["responses"].setdefault(
        "408", {"description": "The request body stalled (PLCERT_BODY_READ_TIMEOUT_S)"}
    )


def _add_job_links(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    links = {
        name: {
            "operationId": paths[path][method]["operationId"],
            "parameters": {"job_id": "$response.body#/id"},
            "description": f"{method.upper()} {path} of the submitted job",
        }
        for name, (path, method) in JOB_LINKS.items()
    }
    paths[_JOBS]["post"]["responses"]["202"]["links"] = links
    # The newest listed job leads to the same routes (jobs that exist before a client starts).
    paths[_JOBS]["get"]["responses"]["200"]["links"] = {
        name: {**link, "parameters": {"job_id": "$response.body#/items/0/id"}}
        for name, link in links.items()
    }


def _errors_as_problems(schema: dict[str, Any]) -> None:
    """Document every 4xx/5xx answer as problem+json only (what the handlers send), including
    FastAPI's automatic 422, and drop its now unused HTTPValidationError schemas."""
    for operations in schema.get("paths", {}).values():
        for op in operations.values():
            for code, resp in op.get("responses", {}).items():
                if code[:1] in ("4", "5"):
                    resp["content"] = dict(_PROBLEM_CONTENT)
                    if code == "422":
                        resp["description"] = "Invalid request (problem+json with errors)"
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
