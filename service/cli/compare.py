"""`plcert compare MODEL... DATA`: rank candidate models on one dataset by certified convergence.

Locally (default) it certifies each model in this process, one after the other; with ``--url``
it submits them to a server as one comparison (``POST /v1/comparisons``) and waits for the
ranking. Either way it prints the ranking, best first, and with ``--out DIR`` writes
``DIR/comparison.json`` and ``DIR/comparison.html``.

Exit codes: 0 done; 2 bad input or usage (fewer than 2 or more than 8 models, unreadable
files, options the server refuses); 3 a certification failed (locally) or the server failed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from plcore.errors import InputError, NonDeterministicModelError, PlcertError, ResourceLimitError
from plcore.report.compare import MAX_CANDIDATES, Candidate, RankingEntry, rank
from service.cli import app
from service.cli.certify import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    _BadInput,
    _check_size,
    _fail,
    _load_data,
    _load_model,
    _read_file,
    _validation_message,
)

POLL_S = 2.0


def _options(budget: str, seed: int, options_json: str | None) -> Any:
    from plcore import CertifyOptions

    extra: dict[str, Any] = {}
    if options_json:
        try:
            extra = json.loads(options_json)
        except json.JSONDecodeError as exc:
            raise _BadInput(f"--options is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise _BadInput("--options must be a JSON object")
    return CertifyOptions(**{"budget": budget, "seed": seed, **extra})


def _local(models: list[Path], data: str, options: Any) -> tuple[list[RankingEntry], dict]:
    from plcore import certify
    from plcore.data import check_fits

    dataset = _load_data(data, None)
    loaded = []
    for path in models:  # every model checked before any is certified
        _check_size(path, None, data)
        loaded.append(_load_model(path, None, None))
        check_fits(loaded[-1], dataset)
    candidates, reports = [], {}
    for i, (path, model) in enumerate(zip(models, loaded, strict=True)):
        typer.echo(f"certifying {i + 1}/{len(models)}: {path.name}", err=True)
        report = certify(model, dataset, options)
        reports[i] = report
        candidates.append(Candidate(index=i, name=path.name, report=report))
    return rank(candidates), reports


def _remote(
    url: str, api_key: str | None, models: list[Path], data: str, options: Any, timeout_s: float
) -> tuple[dict[str, Any], str]:
    import httpx

    if data.startswith("sklearn:"):
        raise _BadInput("with --url, DATA must be a file (a named dataset: use the JSON API)")
    headers = {"X-API-Key": api_key} if api_key else {}
    files = [("model", (p.name, _read_file(p, "model"))) for p in models]
    files.append(("data", (Path(data).name, _read_file(Path(data), "data"))))
    form = {"options": options.model_dump_json()}
    base = url.rstrip("/")
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            r = client.post("/v1/comparisons", files=files, data=form)
            if r.status_code >= 400:
                detail = r.json().get("detail", r.text) if r.content else r.reason_phrase
                raise _BadInput(f"the server refused the comparison ({r.status_code}): {detail}")
            cid = r.json()["id"]
            deadline = time.monotonic() + timeout_s
            while True:
                view = client.get(f"/v1/comparisons/{cid}").json()
                if view.get("ranking") is not None:
                    break
                if time.monotonic() > deadline:
                    _fail(f"comparison {cid} did not finish within {timeout_s:g} s", EXIT_FAILED)
                time.sleep(POLL_S)
            page = client.get(f"/v1/comparisons/{cid}/report.html").text
    except httpx.HTTPError as exc:
        raise _BadInput(f"cannot reach {base}: {exc}") from None
    return view, page


def _print(ranking: list[RankingEntry]) -> None:
    head = f"{'#':>2}  {'model':<40} {'verdict':<14} {'tier':<10} {'rate':>10} {'steps':>9}"
    typer.echo(head)
    for e in ranking:
        rate = f"{e.rate:.6g}" if e.rate is not None else "-"
        steps = str(e.steps_to_target) if e.steps_to_target is not None else "-"
        typer.echo(
            f"{e.rank:>2}  {e.model[:40]:<40} {(e.verdict or e.status):<14} "
            f"{(e.tier or '-'):<10} {rate:>10} {steps:>9}"
        )


@app.command("compare")
def compare_command(
    paths: Annotated[
        list[str],
        typer.Argument(metavar="MODEL... DATA", help="2 to 8 model files, then the data."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Folder for comparison.json and .html."),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Server URL: compare there instead of locally.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="PLCERT_API_KEY", help="API key (with --url).")
    ] = None,
    budget: Annotated[str, typer.Option(metavar="fast|standard|thorough")] = "standard",
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    options_json: Annotated[
        str | None,
        typer.Option("--options", help='More CertifyOptions as JSON, e.g. {"device": "cpu"}.'),
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="Longest wait for the server (s).")] = 3600,
) -> None:
    """Rank MODELs on DATA: certified rate (rigorous first), then steps to the target."""
    try:
        if len(paths) < 3:
            raise _BadInput("give 2 to 8 MODEL files and then DATA")
        models, data = [Path(p) for p in paths[:-1]], paths[-1]
        if len(models) > MAX_CANDIDATES:
            raise _BadInput(f"{len(models)} models: a comparison takes 2 to {MAX_CANDIDATES}")
        if out is not None and out.exists() and not out.is_dir():
            raise _BadInput(f"--out must be a folder, but {out} is a file")
        options = _options(budget, seed, options_json)
        if url is None:
            ranking, reports = _local(models, data, options)
            from plcore.report.compare_html import render_comparison_html

            data_name = Path(data).name if not data.startswith("sklearn:") else data
            page = render_comparison_html(ranking, reports, data_name=data_name)
            status = "succeeded" if reports else "failed"
            result: dict[str, Any] = {
                "status": status,
                "data": data_name,
                "ranking": [e.model_dump(mode="json") for e in ranking],
            }
        else:
            result, page = _remote(url, api_key, models, data, options, timeout_s)
            ranking = [RankingEntry.model_validate(e) for e in result["ranking"]]
        if out is not None:
            try:
                out.mkdir(parents=True, exist_ok=True)
                (out / "comparison.json").write_text(json.dumps(result, indent=2) + "\n")
                (out / "comparison.html").write_text(page, encoding="utf-8")
            except OSError as exc:
                raise _BadInput(f"cannot write to {out}: {exc.strerror or exc}") from exc
    except _BadInput as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except ValidationError as exc:
        _fail(_validation_message(exc), EXIT_BAD_INPUT)
    except (InputError, NonDeterministicModelError, ResourceLimitError) as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except PlcertError as exc:
        _fail(f"a certification failed: {exc}", EXIT_FAILED)
    _print(ranking)
    if out is not None:
        typer.echo(f"comparison: {out / 'comparison.html'}  (JSON: {out / 'comparison.json'})")
