"""Schemathesis runs of the API (every default check; examples, coverage, fuzzing and stateful
phases) with a bounded, seeded number of examples, and the failures they found.

Two runs cover the two axes, API keys and transport, without repeating a combination: the ASGI
app with keys (all four phases; the coverage phase, boundary and negative values of every field,
about 1,300 requests per POST body, depends on the schema and the app, not on the transport or on
keys, so it runs only here) and a live `plcert serve` without keys (the other three phases over
real HTTP). ASGI without keys and live with keys repeated them: 55 s of a CI run.

Checks excluded for an operation are listed in :data:`EXCLUDED`, each with its reason; nothing
else is excluded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema

from service.submission import JSON_EXAMPLE

SEED = 20261130
MAX_EXAMPLES = 20
STATEFUL_MAX_STEPS = 25

EXCLUDED: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/v1/certifications"): {
        "positive_data_acceptance": "an upload whose bytes are not a model, or data that does "
        "not fit the model, is a 422 that no schema can predict",
    },
    ("POST", "/v1/studies"): {
        "positive_data_acceptance": "widths that build no valid spec (an MLP without hidden "
        "layers, over the parameter cap) or data that does not fit the model are a 422 that no "
        "schema can predict",
    },
    ("GET", "/v1/certifications"): {
        "positive_data_acceptance": "a cursor is opaque: a well-formed one that the server did "
        "not issue is a documented 422",
    },
}
"""(method, path) -> {check: why it cannot hold for this operation}."""


def config(api_key: str | None, coverage: bool = True) -> SchemathesisConfig:
    """Seeded, bounded run of every default check in all four phases (without the coverage
    phase when ``coverage`` is false)."""
    lines = [
        f"seed = {SEED}",
        "max-failures = 1000",
        "[generation]",
        f"max-examples = {MAX_EXAMPLES}",
        'database = "none"',  # no replay of examples saved by earlier runs: seeded runs only
        "[phases.stateful]",
        f"max-steps = {STATEFUL_MAX_STEPS}",
    ]
    if not coverage:
        lines += ["[phases.coverage]", "enabled = false"]
    if api_key is not None:
        lines.insert(1, f'headers = {{ "X-API-Key" = "{api_key}" }}')
    for (method, path), checks in EXCLUDED.items():
        lines += ["[[operations]]", f'include-path = "{path}"', f'include-method = "{method}"']
        lines += [f"checks.{name}.enabled = false" for name in checks]
    return SchemathesisConfig.from_str("\n".join(lines))


@dataclass(frozen=True)
class Failure:
    """One failed check: where, which, and the request and answer that showed it."""

    phase: str
    operation: str
    check: str
    title: str
    request: str
    status: int | None
    body: str


@dataclass(frozen=True)
class RunResult:
    """The failures of a run, how many checks ran, and the answers seen per phase."""

    failures: list[Failure]
    checks_run: int
    statuses: dict[tuple[str, str, int], int]
    errors: list[str]


def _template(method: str, url: str) -> str:
    path = "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
    parts = path.split("/")
    if len(parts) > 3 and parts[1:3] == ["v1", "certifications"]:
        parts[3] = "{job_id}"
    if len(parts) > 3 and parts[1:3] == ["v1", "studies"]:
        parts[3] = "{study_id}"
    return f"{method} {'/'.join(parts)}"


def run(schema: Any) -> RunResult:
    """Run schemathesis' engine on ``schema``; collect every failed check."""
    failures: list[Failure] = []
    statuses: dict[tuple[str, str, int], int] = {}
    errors: list[str] = []
    checks_run = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(repr(event))
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        for interaction in recorder.interactions.values():
            if interaction.response is not None:
                key = (
                    str(event.phase),
                    _template(interaction.request.method, interaction.request.uri),
                    interaction.response.status_code,
                )
                statuses[key] = statuses.get(key, 0) + 1
        for case_id, checks in recorder.checks.items():
            for check in checks:
                checks_run += 1
                if check.status.name != "FAILURE":
                    continue
                interaction = recorder.interactions.get(case_id)
                response = interaction.response if interaction else None
                info = check.failure_info
                failures.append(
                    Failure(
                        phase=str(event.phase),
                        operation=recorder.label,
                        check=check.name,
                        title=str(getattr(info.failure, "title", "")) if info else "",
                        request=info.code_sample[:1500] if info else "",
                        status=response.status_code if response else None,
                        body=response.content[:300].decode("utf-8", "replace") if response else "",
                    )
                )
    return RunResult(failures, checks_run, statuses, errors)


def seed_jobs(post: Callable[[dict[str, Any]], int], count: int = 2) -> None:
    """Submit ``count`` valid jobs, so that listing leads the stateful phase to real jobs."""
    for seed in range(count):
        body = {**JSON_EXAMPLE, "options": {**JSON_EXAMPLE["options"], "seed": seed}}
        status = post(body)
        assert status == 202, f"seeding a job answered {status}"


def assert_clean(result: RunResult) -> None:
    """No failed check, no engine error, and the stateful phase reached the job routes."""
    shown = "\n".join(
        f"[{f.phase}] {f.operation}: {f.check} ({f.title}) {f.request} -> {f.status} {f.body}"
        for f in result.failures[:20]
    )
    assert result.failures == [], f"{len(result.failures)} failed checks:\n{shown}"
    assert result.errors == [], result.errors
    assert result.checks_run > 1000, result.checks_run
    reached = {
        op for (phase, op, status) in result.statuses if phase == "stateful" and status < 300
    }
    # Certifications and studies are both jobs with links (studies through their Location
    # header); the seeded walk must reach at least two routes of real jobs of one of them, with
    # ids from its own submissions or from the listing of the seeded jobs (whether one of its
    # own random submissions is accepted depends on the answers it got before: not asserted)
    followed = {
        base: reached & {f"GET {base}/{key}", f"POST {base}/{key}/cancel", f"DELETE {base}/{key}"}
        for base, key in (("/v1/certifications", "{job_id}"), ("/v1/studies", "{study_id}"))
    }
    assert max(len(f) for f in followed.values()) >= 2, (
        "the stateful phase followed too few links to real jobs",
        sorted(reached),
    )


def asgi_schema(app: Any, api_key: str | None, coverage: bool = True) -> Any:
    """The app's OpenAPI document, loaded for calls into the ASGI app itself."""
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config(api_key, coverage))


def url_schema(base_url: str, api_key: str | None, coverage: bool = True) -> Any:
    """A live server's OpenAPI document, loaded for calls over HTTP."""
    cfg = config(api_key, coverage)
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=cfg)
