"""The width (depth) study as one self-contained HTML page: the slope first, then the reasons,
the figures, the table of every point and the provenance. Same style and escaping as the report
page (:mod:`plcore.report.html`): no scripts, no URLs, figures as PNG data URIs."""

from __future__ import annotations

import json

from plcore.report.html import PAGE_CSS, plots_section
from plcore.report.html_text import NA, Row, esc, fmt_number, kv_table, section
from plcore.report.study_plots import study_plots
from plcore.report.study_schema import StudyResult, StudyRow
from plcore.study.fit import slope_text

_STUDY_CSS = """
.slope { font-size: 22px; font-weight: 600; }
td.verdict-cell { font-weight: 600; }
td.v-certified { color: var(--ok); } td.v-not_certified { color: var(--bad); }
td.v-inconclusive { color: var(--mid); }
.scroll { overflow-x: auto; } .scroll table { font-size: 13px; }
"""


def _summary(result: StudyResult) -> str:
    s = result.hessian_norm_slope
    what = "width" if result.kind == "width" else "depth"
    reasons = "".join(f"<li>{esc(r)}</li>" for r in result.reasons)
    expected = f"; theory: {result.expected_slope:g}" if result.expected_slope is not None else ""
    smallest = ""
    if result.kind == "width" and result.mode == "certify":
        smallest = (
            f"<p>Smallest certified width: <b>{fmt_number(result.smallest_certified_width)}</b></p>"
        )
    return (
        '<section id="summary" class="verdict"><h2>Slope of the Hessian norm</h2>'
        f'<p class="slope">d log ||H_F(w0)|| / d log {what} = {esc(slope_text(s))}'
        f"{esc(expected)}</p>"
        f'<p class="subject">{esc(result.model_description)}; {len(result.rows)} points '
        f"({esc(', '.join(str(v) for v in _values(result)))} x seeds "
        f"{esc(', '.join(str(v) for v in result.seeds))}); mode {esc(result.mode)}</p>"
        f"{smallest}<ul class='reasons'>{reasons}</ul></section>"
    )


def _values(result: StudyResult) -> list[int | None]:
    return list(result.widths) if result.kind == "width" else list(result.depths)


_COLUMNS = (
    "width",
    "depth",
    "seed",
    "m",
    "||H_F(w0)||",
    "lambda0",
    "lambda_max",
    "drift",
    "L(w_T)",
    "mu",
    "R",
    "verdict",
    "tier",
)


def _row(r: StudyRow) -> str:
    verdict = (
        f'<td class="verdict-cell v-{esc(r.verdict)}">{esc(r.verdict)}</td>'
        if r.verdict
        else f"<td>{NA}</td>"
    )
    cells = [
        fmt_number(r.width),
        fmt_number(r.depth),
        fmt_number(r.seed),
        fmt_number(r.n_params),
        fmt_number(r.hessian_norm),
        fmt_number(r.lambda_min),
        fmt_number(r.lambda_max),
        fmt_number(r.kernel_drift),
        fmt_number(r.final_loss),
        fmt_number(r.mu),
        fmt_number(r.radius),
    ]
    tds = "".join(f'<td class="num">{c}</td>' for c in cells)
    return f"<tr>{tds}{verdict}<td>{esc(r.tier) if r.tier else NA}</td></tr>"


def _table(result: StudyResult) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in _COLUMNS)
    body = "".join(_row(r) for r in result.rows)
    notes = [f"width {r.width}, seed {r.seed}: {n}" for r in result.rows for n in r.notes]
    extra = (
        "<ul class='note'>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    return section(
        "rows",
        "Every point",
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
        f"</table></div>{extra}",
    )


def _details(result: StudyResult) -> str:
    d = result.kernel_drift_slope
    p = result.provenance
    rows: list[Row] = [
        ("Which layers scale", esc(result.scaled_layers), ""),
        ("Slope method", esc(result.hessian_norm_slope.method), ""),
        ("Kernel drift slope", esc(slope_text(d)) if d is not None else NA, ""),
        ("Drift decreasing", fmt_number(result.kernel_drift_decreasing), ""),
        (
            "Infinite-width lambda0",
            fmt_number(result.lambda_min_infinite_width),
            esc(result.infinite_width_method),
        ),
        ("Options", f"<code>{esc(json.dumps(result.options, sort_keys=True))}</code>", ""),
        ("Base spec", f"<code>{esc(json.dumps(result.base_spec, sort_keys=True))}</code>", ""),
        ("Data SHA-256", f"<code>{esc(p.data_sha256)}</code>", ""),
        ("Versions", esc(", ".join(f"{k} {v}" for k, v in sorted(p.versions.items()))), ""),
        ("Elapsed (all points)", fmt_number(p.elapsed_s) + " s", ""),
        ("Created", esc(p.created_at) or NA, ""),
    ]
    return section("details", "Method and provenance", kv_table(rows))


def render_study_html(result: StudyResult) -> str:
    """The study as one self-contained HTML page (no scripts, no external resources)."""
    title = f"plcert {result.kind} study: {result.model_description}"
    version = result.provenance.versions.get("plcert", "")
    body = _summary(result) + plots_section(study_plots(result)) + _table(result) + _details(result)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{PAGE_CSS}{_STUDY_CSS}</style></head>"
        f"<body><main><h1>{esc(result.kind.capitalize())} study</h1>"
        + body
        + f"<footer>Generated by plcert {esc(version)}; study schema "
        f"{esc(result.schema_version)}.</footer></main></body></html>\n"
    )
