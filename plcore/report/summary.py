"""A short summary of a report for terminals: plain fixed-width text, or a ``rich`` table."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from plcore.report.plots_base import closes_at_init
from plcore.report.schema import Report

_VERDICT_STYLE = {
    "certified": "bold green",
    "not_certified": "bold red",
    "inconclusive": "bold yellow",
}


def _num(x: float | int | None) -> str:
    """4 significant digits; ``-`` for a missing or non-finite value."""
    if x is None or isinstance(x, bool):
        return "-" if x is None else ("yes" if x else "no")
    if isinstance(x, int):
        return str(x)
    return f"{x:.4g}" if math.isfinite(x) else "-"


def _bracket(estimate: float | None, bound: float | None) -> str:
    return f"{_num(estimate)} (bound {_num(bound)})"


def summary_rows(report: Report) -> list[tuple[str, str]]:
    """The summary as (label, value) pairs, the same for both renderings."""
    p, i, c, g = report.problem, report.initial, report.constants, report.gd
    caveat = "" if g.step_size is None or closes_at_init(report) else " (not certified at w0)"
    rows: list[tuple[str, str]] = [
        ("verdict", f"{report.verdict} ({report.tier})"),
        ("model", p.model_description or "-"),
        ("data", p.dataset_name or "-"),
        ("n, k, m", f"{p.n_samples}, {p.n_outputs}, {p.n_params}"),
        ("m / N", _num(p.overparameterization_ratio)),
        ("initial loss", _num(i.loss)),
        ("lambda_min K(w0)", _num(i.lambda_min)),
        ("L_F", _bracket(c.L_F.estimate, c.L_F.upper_bound)),
        ("beta_F", _bracket(c.beta_F.estimate, c.beta_F.upper_bound)),
        ("mu", _bracket(c.mu.estimate, c.mu.lower_bound)),
        ("radius R / rho", f"{_num(c.radius)} / {_num(c.search_radius)}"),
        ("GD step (sum / mse)", f"{_num(g.step_size)} / {_num(g.step_size_mse_mean)}"),
        ("rate 1 - eta mu", _num(g.rate) + caveat),
        ("steps to target", f"{_num(g.iterations_to_target)} (loss {_num(g.target_loss)})"),
    ]
    if g.planned_learning_rate is not None:
        plr = g.planned_learning_rate
        rows.append(
            (
                "planned lr",
                f"{_num(plr.learning_rate)} ({plr.convention}): "
                f"{'safe' if plr.safe else 'NOT safe'}, {_num(plr.ratio_to_safe)} x certified",
            )
        )
    for s in report.sgd:
        rows.append((f"SGD s={s.batch_size}", f"step {_num(s.step_size)}, rate {_num(s.rate)}"))
    if report.validation is not None:
        v = report.validation
        final = v.losses[-1] if v.losses else None
        rows.append(
            (
                "checking run",
                f"{v.steps} steps, final loss {_num(final)}, bound held {_num(v.bound_held)}",
            )
        )
    if report.path.certified_from_step is not None:
        path = report.path
        detail = (
            f": step {_num(path.step_size)}, rate {_num(path.rate)}"
            if path.step_size is not None
            else ""
        )
        rows.append(("path certificate", f"from step {path.certified_from_step}{detail}"))
    rows.extend(("reason", r) for r in report.reasons)
    return rows


def summary_table(report: Report) -> str:
    """The summary as fixed-width plain text, one ``label  value`` line per row."""
    rows = summary_rows(report)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows) + "\n"


def summary_rich_table(report: Report) -> Table:
    """The summary as a :class:`rich.table.Table` (the verdict coloured)."""
    table = Table(title="plcert certificate", show_header=False, title_justify="left")
    table.add_column("quantity", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for label, value in summary_rows(report):
        if label == "verdict":
            table.add_row(label, Text(value, style=_VERDICT_STYLE.get(report.verdict, "")))
        else:
            # Text (not markup): user strings such as model descriptions may contain brackets.
            table.add_row(label, Text(value))
    return table
