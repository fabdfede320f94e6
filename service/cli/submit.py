"""`plcert submit MODEL DATA --url URL [--wait]`: run a certification on a plcert server.

Prints the job id. With ``--wait`` it follows the job with a progress bar and, when it
succeeded, writes ``report.json`` and ``report.html`` into ``--out`` (if given) and prints the
verdict.

``--junit FILE``, ``--min-rate X`` and ``--max-steps N`` (which imply ``--wait``) are the CI
gates of ``plcert certify`` (:mod:`service.cli.gates`, docs/ci.md).

Exit codes (as ``plcert certify``): 0 submitted, or done (and certified, with
``--fail-if-not-certified``); 1 not certified with ``--fail-if-not-certified`` or ``--junit``, or
a gate failed; 2 bad input or
usage (an HTTP 4xx answer prints its problem detail; a job that failed on its input); 3 the job
failed otherwise or was canceled; 130 interrupted (the job keeps running on the server).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console

from service.cli import app
from service.cli.gates import (
    GateRun,
    GateUsageError,
    JunitOption,
    MaxStepsOption,
    MinRateOption,
    check_gate_options,
)
from service.cli.options import FrozenOption, TrainableOption
from service.cli.progress import stage_progress

if TYPE_CHECKING:
    from service.client import CertificationJob, PlcertClient

EXIT_OK = 0
EXIT_NOT_CERTIFIED = 1
EXIT_BAD_INPUT = 2
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130


def _fail(message: str, code: int) -> NoReturn:
    text = " ".join(str(message).split())
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"error: {text}", markup=False)
    raise typer.Exit(code)


def _problem_text(problem: dict[str, Any]) -> str:
    parts = [str(problem.get("title") or "error"), str(problem.get("detail") or "")]
    for err in problem.get("errors") or []:
        if isinstance(err, dict):
            loc = ".".join(str(p) for p in err.get("loc", []) if p != "body")
            parts.append(f"{loc}: {err.get('msg', '')}" if loc else str(err.get("msg", "")))
    return "; ".join(p for p in parts if p)


@app.command()
def submit(
    model: Annotated[str, typer.Argument(help="Model file: .onnx, or .json (model spec).")],
    data: Annotated[
        str, typer.Argument(help="Data file (.npz/.npy/.csv/.json) or a name like sklearn:diabetes")
    ],
    url: Annotated[
        str, typer.Option(envvar="PLCERT_URL", help="Server URL, e.g. http://127.0.0.1:8000.")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None, typer.Option(envvar="PLCERT_API_KEY", help="API key (X-API-Key header).")
    ] = None,
    options: Annotated[
        str | None, typer.Option(help='Options as JSON, e.g. \'{"budget": "fast"}\'.')
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Weights (.safetensors/.npz) for a JSON spec.")
    ] = None,
    trainable: TrainableOption = None,
    frozen: FrozenOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the server's estimate (JSON); queue nothing."),
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="With --wait: write report.json and report.html here.")
    ] = None,
    fail_if_not_certified: Annotated[
        bool,
        typer.Option("--fail-if-not-certified", help="Exit 1 unless certified (implies --wait)."),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="With --wait: give up after this many seconds.")
    ] = None,
    junit: JunitOption = None,
    min_rate: MinRateOption = None,
    max_steps: MaxStepsOption = None,
) -> None:
    """Submit MODEL and DATA to a plcert server and print the job id.

    --junit, --min-rate and --max-steps imply --wait (the CI gates of docs/ci.md).
    """
    from service.client import JobTimeout, PlcertClient, PlcertHTTPError

    gates = GateRun(
        f"plcert submit {model} {data}", junit, min_rate, max_steps, fail_if_not_certified
    )

    def fail(message: str, code: int) -> NoReturn:
        gates.write_error(message)
        _fail(message, code)

    opts: dict[str, Any] = {}
    try:
        check_gate_options(min_rate, junit)
    except GateUsageError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    if options:
        try:
            opts = json.loads(options)
        except json.JSONDecodeError as exc:
            fail(f"--options is not valid JSON: {exc}", EXIT_BAD_INPUT)
        if not isinstance(opts, dict):
            fail("--options must be a JSON object", EXIT_BAD_INPUT)
    if trainable:
        opts["trainable"] = list(trainable)
    if frozen:
        opts["frozen"] = list(frozen)
    is_named = ":" in data and not Path(data).exists()
    if not Path(model).is_file():
        fail(f"model file {model!r} does not exist", EXIT_BAD_INPUT)
    if not is_named and not Path(data).is_file():
        fail(f"data file {data!r} does not exist (or use a name like sklearn:NAME)", EXIT_BAD_INPUT)
    wait = wait or fail_if_not_certified or gates.asked

    client = PlcertClient(url, api_key=api_key)
    console = Console(stderr=True, highlight=False)
    try:
        if dry_run:
            estimate = client.estimate(Path(model), data, opts, weights=weights)
            typer.echo(estimate.model_dump_json())
            raise typer.Exit(EXIT_OK)
        job = client.submit(Path(model), data, opts, weights=weights)
        typer.echo(job.id)
        if not wait:
            raise typer.Exit(EXIT_OK)
        job = _follow(client, job.id, console, timeout)
        raise typer.Exit(_finish(client, job, out, gates, console))
    except PlcertHTTPError as exc:
        code = EXIT_BAD_INPUT if 400 <= exc.status < 500 else EXIT_FAILED
        fail(f"HTTP {exc.status}: {_problem_text(exc.problem)}", code)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc}", EXIT_BAD_INPUT)
    except JobTimeout as exc:
        fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        console.print("interrupted: the job keeps running on the server")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        client.close()


def _follow(
    client: PlcertClient, job_id: str, console: Console, timeout: float | None
) -> CertificationJob:
    with stage_progress(console) as bar:
        task = bar.add_task("queued", total=1.0)

        def update(fraction: float, stage: str) -> None:
            bar.update(task, completed=fraction, description=stage)

        return client.wait(job_id, timeout=timeout, on_progress=update)


def _finish(
    client: PlcertClient,
    job: CertificationJob,
    out: Path | None,
    gates: GateRun,
    console: Console,
) -> int:
    if job.status == "failed":
        error = job.error.model_dump() if job.error is not None else {}
        message = f"job {job.id} failed: {_problem_text(error)}"
        console.print(message, markup=False)
        gates.write_error(message)
        return EXIT_BAD_INPUT if 400 <= int(error.get("status") or 500) < 500 else EXIT_FAILED
    if job.status == "canceled":
        console.print(f"job {job.id} was canceled", markup=False)
        gates.write_error(f"job {job.id} was canceled")
        return EXIT_FAILED
    report = client.report(job.id)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (out / "report.html").write_text(client.report_html(job.id), encoding="utf-8")
        console.print(f"reports written to {out}/report.json and report.html", markup=False)
    verdict = report.verdict
    typer.echo(f"verdict: {verdict} ({report.tier})")
    for reason in report.reasons:
        typer.echo(f"  - {reason}")
    try:
        return gates.apply(report)
    except OSError as exc:
        _fail(f"cannot write --junit {gates.junit}: {exc.strerror or exc}", EXIT_BAD_INPUT)
