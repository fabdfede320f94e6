"""`plcert certify MODEL DATA --out DIR`: run a certification locally and write the report.

Writes ``DIR/report.json`` and ``DIR/report.html`` and prints a summary table.
``--dry-run`` loads model and data, prints the estimated time and peak memory of the run
(:mod:`plcore.estimate.cost`; ``--json`` for JSON) and exits 0 without computing.

CI gates (:mod:`service.cli.gates`, docs/ci.md): ``--junit FILE`` writes a JUnit XML result
with one test case per check, ``--min-rate X`` and ``--max-steps N`` add the rate and steps checks.

Exit codes: 0 done (and certified, with ``--fail-if-not-certified``); 1 not certified with
``--fail-if-not-certified`` or ``--junit``, or a gate failed; 2 bad input or usage (one
``error: ...`` line on stderr, no traceback); 3 the computation failed (a numerical error);
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from plcore.errors import InputError, NonDeterministicModelError, PlcertError, ResourceLimitError
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

EXIT_OK = 0
EXIT_NOT_CERTIFIED = 1
EXIT_BAD_INPUT = 2
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130

_DATA_SUFFIXES = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".json": "json"}
_MODEL_SUFFIXES = {".onnx": "onnx", ".json": "json"}


class _BadInput(Exception):
    """A usage problem found by the command itself (missing file, bad flag value)."""


def _fail(message: str, code: int) -> NoReturn:
    # One line, no traceback: collapse any newlines the message carries.
    text = " ".join(str(message).split())
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"error: {text}", markup=False)
    raise typer.Exit(code)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "value"
        parts.append(f"{loc}: {err.get('msg', 'invalid')} (got {err.get('input')!r})")
    return "invalid options: " + "; ".join(parts)


def _read_file(path: Path, what: str) -> bytes:
    if not path.exists():
        raise _BadInput(f"{what} file not found: {path}")
    if not path.is_file():
        raise _BadInput(f"{what} path is not a file: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _BadInput(f"cannot read {what} file {path}: {exc.strerror or exc}") from exc


def _load_model(model_path: Path, fmt: str | None, weights: Path | None) -> Any:
    from plcore import load_model

    if fmt is not None and fmt not in ("onnx", "json"):
        raise _BadInput(f"--format-model must be 'onnx' or 'json', got {fmt!r}")
    raw = _read_file(model_path, "model")
    fmt = fmt or _MODEL_SUFFIXES.get(model_path.suffix.lower())
    weight_bytes = _read_file(weights, "weights") if weights is not None else None
    return load_model(raw, fmt, weights=weight_bytes)  # type: ignore[arg-type]


def _check_size(model_path: Path, fmt: str | None, source: str) -> None:
    """The API's resource guards (``service.guards``) from the bytes, before anything is built:
    a job over a ``PLCERT_MAX_*`` limit is a bad input (exit 2) with the API's message."""
    from plcore.estimate.limits import SizeLimits
    from plcore.models.loader import sniff_model_format
    from service.config import get_settings
    from service.guards import find_violation

    try:
        limits = get_settings().size_limits
    except ValueError:
        # A setting that only the API or the worker uses may be invalid here (PLCERT_HOST
        # without keys, say); the local run still gets the default limits.
        limits = SizeLimits()
    raw = _read_file(model_path, "model")
    model_format = fmt or _MODEL_SUFFIXES.get(model_path.suffix.lower()) or sniff_model_format(raw)
    if source.startswith("sklearn:"):
        data, data_format = source.encode("utf-8"), "named"
    else:
        path = Path(source)
        data = _read_file(path, "data")
        data_format = _DATA_SUFFIXES.get(path.suffix.lower()) or ""
    violation = find_violation(raw, model_format, data, data_format, limits)
    if violation is not None:
        raise _BadInput(violation.message)


def _load_data(source: str, target_columns: str | None) -> Any:
    from plcore import load_dataset

    columns = (
        [c.strip() for c in target_columns.split(",") if c.strip()] if target_columns else None
    )
    if source.startswith("sklearn:"):
        if columns is not None:
            raise _BadInput("--target-columns applies to csv and npy files, not sklearn data")
        return load_dataset(source)
    path = Path(source)
    raw = _read_file(path, "data")
    data = load_dataset(raw, _DATA_SUFFIXES.get(path.suffix.lower()), target_columns=columns)
    return dataclasses.replace(data, name=path.name)


@contextmanager
def cli_errors(
    failed: str,
    *,
    fail: Callable[[str, int], NoReturn] = _fail,
    bad_input: tuple[type[Exception], ...] = (),
) -> Iterator[None]:
    """Exit with the module docstring's codes: bad input (and ``bad_input``) 2 with one
    ``error:`` line, ``failed`` (e.g. "the certification failed") and the error 3, an unexpected
    error 3 (the traceback with PLCERT_DEBUG=1), Ctrl-C 130; ``fail`` prints and exits."""
    usage: tuple[type[Exception], ...] = (_BadInput, *bad_input)
    try:
        yield
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except usage as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except ValidationError as exc:
        fail(_validation_message(exc), EXIT_BAD_INPUT)
    except (InputError, NonDeterministicModelError, ResourceLimitError) as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except PlcertError as exc:
        fail(f"{failed}: {exc}", EXIT_FAILED)
    except Exception as exc:
        # A bug, not bad input: one line for the user (the traceback with PLCERT_DEBUG=1).
        if os.environ.get("PLCERT_DEBUG") == "1":
            raise
        fail(
            f"internal error ({type(exc).__name__}: {exc}); this is a bug in plcert, "
            "please report it (PLCERT_DEBUG=1 shows the traceback)",
            EXIT_FAILED,
        )


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[float, str], None] | None]:
    """A rich progress bar on stderr; yields the ``on_progress`` callback (None when quiet)."""
    if not enabled:
        yield None
        return
    console = Console(stderr=True)
    with stage_progress(console) as bar:
        task = bar.add_task("starting", total=1.0)

        def on_progress(fraction: float, stage: str) -> None:
            bar.update(task, completed=min(max(fraction, 0.0), 1.0), description=stage)

        yield on_progress


@app.command("certify")
def certify_command(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="Model file: .onnx, or .json (spec).")
    ],
    data: Annotated[
        str,
        typer.Argument(
            metavar="DATA", help='Data file (.npz/.npy/.csv/.json) or "sklearn:NAME[?n=..]".'
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Folder for report.json and report.html."),
    ] = None,
    format_model: Annotated[
        str | None,
        typer.Option("--format-model", help="onnx or json (default: from the file suffix)."),
    ] = None,
    budget: Annotated[
        str, typer.Option(metavar="fast|standard|thorough", help="Effort of the probes and run.")
    ] = "standard",
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    target_loss: Annotated[
        float | None, typer.Option(help="Loss (1/2 sum of squares) to predict steps for.")
    ] = None,
    batch_size: Annotated[
        list[int] | None,
        typer.Option("--batch-size", help="SGD mini-batch size (repeatable)."),
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Planned learning rate to check.")
    ] = None,
    lr_convention: Annotated[
        str, typer.Option(help="Loss --lr refers to: mse (mean) or sum (1/2 sum).")
    ] = "mse",
    kernel_method: Annotated[
        str, typer.Option(help="Tangent kernel: auto, reference or structured.")
    ] = "auto",
    validation_steps: Annotated[
        int | None, typer.Option(help="Steps of the checking GD run (default by budget).")
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Weights for a JSON spec (.safetensors or .npz).")
    ] = None,
    trainable: TrainableOption = None,
    frozen: FrozenOption = None,
    target_columns: Annotated[
        str | None, typer.Option(help="CSV/npy target columns, comma separated: a,b.")
    ] = None,
    fail_if_not_certified: Annotated[
        bool, typer.Option("--fail-if-not-certified", help="Exit 1 unless certified.")
    ] = False,
    junit: JunitOption = None,
    min_rate: MinRateOption = None,
    max_steps: MaxStepsOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or table; print the verdict.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the estimated time and memory; compute nothing."),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="With --dry-run: print the estimate as JSON.")
    ] = False,
) -> None:
    """Certify that gradient descent trains MODEL on DATA to zero loss; write the report to --out.

    Exit codes: 0 done, 1 not certified (with --fail-if-not-certified or --junit) or a gate
    (--min-rate, --max-steps) failed, 2 bad input or usage, 3 the computation failed.
    """
    from plcore import CertifyOptions

    gates = GateRun(
        f"plcert certify {model} {data}", junit, min_rate, max_steps, fail_if_not_certified
    )

    def fail(message: str, code: int) -> NoReturn:
        gates.write_error(message)
        _fail(message, code)

    with cli_errors("the certification failed", fail=fail, bad_input=(GateUsageError,)):
        check_gate_options(min_rate, junit)
        options = CertifyOptions(
            budget=budget,  # type: ignore[arg-type]
            seed=seed,
            device=device,
            target_loss=target_loss,
            batch_sizes=batch_size or [],
            learning_rate=lr,
            lr_convention=lr_convention,  # type: ignore[arg-type]
            kernel_method=kernel_method,  # type: ignore[arg-type]
            validation_steps=validation_steps,
            trainable=trainable or None,
            frozen=frozen or [],
        )
        if out is None and not dry_run:
            raise _BadInput("--out DIR is required (or --dry-run for an estimate only)")
        if out is not None and out.exists() and not out.is_dir():
            raise _BadInput(f"--out must be a folder, but {out} is a file")
        _check_size(Path(model), format_model, data)
        loaded_model = _load_model(Path(model), format_model, weights)
        dataset = _load_data(data, target_columns)

        from plcore import certify
        from plcore.data import check_fits

        check_fits(loaded_model, dataset)
        if dry_run:
            from plcore.estimate.cost import estimate_for
            from service.cli.dry_run import print_estimate

            print_estimate(estimate_for(loaded_model, dataset, options), as_json=json_output)
            return
        assert out is not None
        with _progress(not quiet) as on_progress:
            report = certify(loaded_model, dataset, options, on_progress=on_progress)
        report_json = report.model_dump_json(indent=2)

        from plcore.report.html import render_html

        page = render_html(report)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "report.json").write_text(report_json + "\n", encoding="utf-8")
            (out / "report.html").write_text(page, encoding="utf-8")
        except OSError as exc:
            raise _BadInput(f"cannot write the report to {out}: {exc.strerror or exc}") from exc

    assert out is not None
    _print_result(report, out, quiet)
    try:
        code = gates.apply(report)
    except OSError as exc:
        _fail(f"cannot write --junit {junit}: {exc.strerror or exc}", EXIT_BAD_INPUT)
    if code != EXIT_OK:
        raise typer.Exit(code)


def _print_result(report: Any, out: Path, quiet: bool) -> None:
    if quiet:
        print(report.verdict)
        return
    from plcore.report.summary import summary_rich_table

    console = Console(file=sys.stdout, highlight=False)
    console.print(summary_rich_table(report))
    console.print(
        f"report: {out / 'report.html'}  (JSON: {out / 'report.json'})",
        markup=False,
        soft_wrap=True,
    )
