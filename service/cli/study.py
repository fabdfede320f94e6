"""`plcert study width SPEC DATA --widths W... --out DIR` (and `plcert study depth`): the width
study of :func:`plcore.study_width`, run locally.

Writes ``DIR/study.json`` (the :class:`plcore.report.study_schema.StudyResult`, with
``hessian_norm_slope: {estimate, ci_low, ci_high}`` and one row per width and seed) and
``DIR/study.html``, and prints one line per point and the slope.

``--widths`` takes several values after one flag (``--widths 64 256 1024``), comma lists
(``--widths 64,256,1024``) or the flag repeated; the same for ``--seeds`` and ``--depths``.
Exit codes as ``plcert certify``: 0 done, 2 bad input or usage, 3 the computation failed,
130 interrupted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand

from service.cli import app
from service.cli.certify import _BadInput, _load_data, _progress, _read_file, cli_errors

study_app = typer.Typer(
    name="study",
    help="Studies over model sizes: how PL* emerges with width (or depth).",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")

_MULTI = ("--widths", "--seeds", "--depths")
_INTEGERS = re.compile(r"^-?\d[\d,\s-]*$")


class MultiValueCommand(TyperCommand):
    """Lets ``--widths 64 256 1024`` take every integer token after the flag (click options
    take one value each): the tokens are rewritten to ``--widths 64 --widths 256 ...``
    before parsing. A token that is not an integer list (a path) ends the run of values."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_values(args, _MULTI))


def expand_multi_values(args: Sequence[str], flags: Sequence[str]) -> list[str]:
    """``[..., "--widths", "64", "256", "x.json"]`` -> ``[..., "--widths", "64", "--widths",
    "256", "x.json"]`` for each flag in ``flags``."""
    out: list[str] = []
    current: str | None = None
    for tok in args:
        if tok in flags:
            current = tok
            out.append(tok)
            continue
        if current is not None and _INTEGERS.match(tok):
            if out[-1] != current:
                out.append(current)
            out.append(tok)
            continue
        current = None
        out.append(tok)
    return out


def parse_int_list(values: Sequence[str] | None, flag: str) -> list[int]:
    """Every integer of ``values`` (each may be a comma list); a non-integer is bad input."""
    out: list[int] = []
    for v in values or []:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise _BadInput(f"{flag} takes integers, got {part!r}") from None
    return out


BudgetOption = Annotated[
    str, typer.Option(metavar="fast|standard|thorough", help="Effort of every certification.")
]
SeedsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--seeds",
        metavar="S...",
        help="Initialisation seeds of the spec at each size (default: the spec's seed).",
    ),
]
ModeOption = Annotated[
    str,
    typer.Option(
        metavar="certify|quantities",
        help="certify: a full certification per point; quantities: only the Hessian norm, "
        "the kernel and a GD run (no mu, R or verdict; 2-4x cheaper).",
    ),
]


def _options(budget: str, validation_steps: int | None, seed: int, device: str) -> Any:
    from plcore import CertifyOptions

    return CertifyOptions(
        budget=budget,  # type: ignore[arg-type]
        validation_steps=validation_steps,
        seed=seed,
        device=device,
    )


def _run(
    kind: str,
    spec_path: Path,
    data: str,
    values: list[int],
    seeds: list[str] | None,
    fixed: int | None,
    out: Path,
    options: Any,
    mode: str,
    quiet: bool,
) -> None:
    from plcore.report.study_html import render_study_html
    from plcore.study import study_depth, study_width
    from plcore.study.scaling import spec_from_json

    if mode not in ("certify", "quantities"):
        raise _BadInput(f"--mode must be 'certify' or 'quantities', got {mode!r}")
    if out.exists() and not out.is_dir():
        raise _BadInput(f"--out must be a folder, but {out} is a file")
    spec = spec_from_json(_read_file(spec_path, "model spec"))
    dataset = _load_data(data, None)
    seed_list = parse_int_list(seeds, "--seeds") if seeds else None
    with _progress(not quiet) as on_progress:
        if kind == "width":
            result = study_width(
                spec,
                dataset,
                values,
                seeds=seed_list,
                options=options,
                depth=fixed,
                mode=mode,  # type: ignore[arg-type]
                on_progress=on_progress,
            )
        else:
            result = study_depth(
                spec,
                dataset,
                values,
                seeds=seed_list,
                options=options,
                width=fixed,
                mode=mode,  # type: ignore[arg-type]
                on_progress=on_progress,
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "study.json").write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (out / "study.html").write_text(render_study_html(result), encoding="utf-8")
    except OSError as exc:
        raise _BadInput(f"cannot write the study to {out}: {exc.strerror or exc}") from exc
    _print(result, out, quiet)


def _print(result: Any, out: Path, quiet: bool) -> None:
    s = result.hessian_norm_slope
    fmt = "n/a" if s.estimate is None else f"{s.estimate:.3f}"
    ci = "" if s.ci_low is None else f" [{s.ci_low:.3f}, {s.ci_high:.3f}]"
    if quiet:
        print(f"hessian_norm_slope {fmt}{ci}")
        return
    console = Console(highlight=False, soft_wrap=True)
    for r in result.rows:
        h = "n/a" if r.hessian_norm is None else f"{r.hessian_norm:.4g}"
        d = "n/a" if r.kernel_drift is None else f"{r.kernel_drift:.3g}"
        console.print(
            f"width {r.width:>6}  depth {r.depth}  seed {r.seed:>3}  ||H_F|| {h:>10}  "
            f"lambda0 {r.lambda_min:.4g}  drift {d:>9}  {r.verdict or '-'}",
            markup=False,
        )
    console.print(f"Hessian-norm slope: {fmt}{ci} (95%)", markup=False)
    if result.kind == "width" and result.mode == "certify":
        console.print(f"smallest certified width: {result.smallest_certified_width}", markup=False)
    console.print(f"study: {out / 'study.html'}  (JSON: {out / 'study.json'})", markup=False)


SpecArg = Annotated[
    Path, typer.Argument(metavar="SPEC", help="JSON model spec (MLP shorthand or layer list).")
]
DataArg = Annotated[
    str,
    typer.Argument(metavar="DATA", help='Data file (.npz/.npy/.csv/.json) or "sklearn:NAME".'),
]
OutOption = Annotated[
    Path, typer.Option("--out", metavar="DIR", help="Folder for study.json and study.html.")
]
StepsOption = Annotated[
    int | None, typer.Option(help="Steps of each checking GD run (default by budget).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print the slope only.")]


@study_app.command("width", cls=MultiValueCommand)
def width_command(
    spec: SpecArg,
    data: DataArg,
    out: OutOption,
    widths: Annotated[
        list[str],
        typer.Option("--widths", metavar="W...", help="Hidden widths to study (up to 16)."),
    ],
    seeds: SeedsOption = None,
    depth: Annotated[
        int | None, typer.Option(help="Hidden layers at every width (default: the spec's).")
    ] = None,
    budget: BudgetOption = "fast",
    mode: ModeOption = "certify",
    validation_steps: StepsOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the certification's random choices.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    quiet: QuietOption = False,
) -> None:
    """Certify SPEC at each width on DATA; fit the log-log slope of the Hessian norm."""

    with cli_errors("the study failed"):
        values = parse_int_list(widths, "--widths")
        options = _options(budget, validation_steps, seed, device)
        _run("width", spec, data, values, seeds, depth, out, options, mode, quiet)


@study_app.command("depth", cls=MultiValueCommand)
def depth_command(
    spec: SpecArg,
    data: DataArg,
    out: OutOption,
    depths: Annotated[
        list[str],
        typer.Option("--depths", metavar="L...", help="Numbers of hidden layers (up to 16)."),
    ],
    seeds: SeedsOption = None,
    width: Annotated[
        int | None, typer.Option(help="Hidden width of every layer (default: the spec's).")
    ] = None,
    budget: BudgetOption = "fast",
    mode: ModeOption = "certify",
    validation_steps: StepsOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the certification's random choices.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    quiet: QuietOption = False,
) -> None:
    """Certify an MLP SPEC at each depth on DATA (descriptive; no expected exponent)."""

    with cli_errors("the study failed"):
        values = parse_int_list(depths, "--depths")
        options = _options(budget, validation_steps, seed, device)
        _run("depth", spec, data, values, seeds, width, out, options, mode, quiet)
