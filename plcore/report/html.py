"""The report as one self-contained HTML page (inline CSS and PNG data URIs, no scripts, no URLs).

Order: the verdict first, then what it means in words, then the numbers with their brackets and
methods, the figures, and finally conventions and provenance. Every string that can come from a
user (model description, dataset name, reasons, methods, options) goes through :func:`html.escape`
(via :func:`plcore.report.html_text.esc`). The number tables are built in
:mod:`plcore.report.html_sections` and :mod:`plcore.report.html_closure`.
"""

from __future__ import annotations

import json

from plcore.report.html_closure import at_init_section, path_section, pl_eps_section, width_section
from plcore.report.html_sections import (
    constants_section,
    gd_section,
    initial_section,
    parameters_section,
    problem_section,
    sgd_section,
    validation_section,
)
from plcore.report.html_text import (
    NA,
    Row,
    esc,
    fmt_number,
    kv_table,
    meaning_sentences,
    missing,
    section,
)
from plcore.report.plots import all_plots
from plcore.report.plots_base import Plot
from plcore.report.schema import Report

_VERDICT_TEXT = {
    "certified": "Certified",
    "not_certified": "Not certified",
    "inconclusive": "Inconclusive",
}
_TIER_TEXT = {
    "rigorous": "rigorous: proven bounds",
    "estimated": "estimated: sampled constants",
}


def _verdict(report: Report) -> str:
    reasons = "".join(f"<li>{esc(r)}</li>" for r in report.reasons) or "<li>no reasons given</li>"
    desc = report.problem.model_description or "model"
    data = report.problem.dataset_name or "the given data"
    return (
        '<section id="verdict" class="verdict">'
        "<h2>Verdict</h2>"
        f'<div class="badges"><span class="badge verdict-{esc(report.verdict)}">'
        f"{_VERDICT_TEXT.get(report.verdict, esc(report.verdict))}</span>"
        f'<span class="badge tier tier-{esc(report.tier)}">'
        f"{_TIER_TEXT.get(report.tier, esc(report.tier))}</span></div>"
        f'<p class="subject">{esc(desc)} on {esc(data)}</p>'
        f'<ul class="reasons">{reasons}</ul></section>'
    )


def _meaning(report: Report) -> str:
    text = " ".join(esc(s) for s in meaning_sentences(report))
    return section("meaning", "What this means", f'<p class="meaning">{text}</p>')


def plots_section(plots: list[Plot]) -> str:
    if not plots:
        return section("plots", "Plots", missing("No data to plot."))
    figs = "".join(
        f'<figure id="plot-{p.key}"><img src="{p.data_uri}" alt="{esc(p.title)}">'
        f"<figcaption><b>{esc(p.title)}.</b> {esc(p.caption)}</figcaption></figure>"
        for p in plots
    )
    return section("plots", "Plots", f'<div class="plots">{figs}</div>')


def _conventions(report: Report) -> str:
    if not report.conventions:
        return section("conventions", "Conventions", missing("None recorded."))
    rows: list[Row] = [(esc(k), "", esc(v)) for k, v in report.conventions.items()]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, _, v in rows)
    return section("conventions", "Conventions", f"<dl>{items}</dl>")


def _provenance(report: Report) -> str:
    p = report.provenance
    versions = ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted(p.versions.items()))
    options = esc(json.dumps(p.options, sort_keys=True, default=str)) if p.options else ""
    rows: list[Row] = [
        ("Model SHA-256", f"<code>{esc(p.model_sha256)}</code>", ""),
        ("Data SHA-256", f"<code>{esc(p.data_sha256)}</code>", ""),
        ("Versions", versions or NA, ""),
        ("Device", esc(p.device), ""),
        ("Seed", fmt_number(p.seed), ""),
        ("Budget", esc(p.budget) or NA, ""),
        ("Options", f"<code>{options}</code>" if options else NA, ""),
        ("Elapsed", fmt_number(p.elapsed_s) + " s", ""),
        ("Created", esc(p.created_at) or NA, ""),
        ("Schema version", esc(report.schema_version), ""),
    ]
    return section("provenance", "Provenance", kv_table(rows))


_CSS = """
:root { --ok: #1e8449; --bad: #b03a2e; --mid: #b9770e; --ink: #1c2833; --muted: #5d6d7e; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  margin: 0; background: #f4f6f7; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 1px solid #d5d8dc; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.verdict { background: #fbfcfc; border: 1px solid #d5d8dc; border-radius: 8px;
  padding: 6px 18px 10px; }
.verdict h2 { border: 0; margin-top: 10px; }
.badges { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
.badge { display: inline-block; border-radius: 6px; padding: 6px 16px; font-weight: 600; }
.verdict-certified, .verdict-not_certified, .verdict-inconclusive { font-size: 26px; color: #fff; }
.verdict-certified { background: var(--ok); }
.verdict-not_certified { background: var(--bad); }
.verdict-inconclusive { background: var(--mid); }
.tier { font-size: 14px; border: 2px solid var(--muted); color: var(--muted); }
.tier-rigorous { border-color: var(--ok); color: var(--ok); }
.subject { color: var(--muted); margin: 10px 0 4px; overflow-wrap: anywhere; }
.reasons li { margin: 2px 0; overflow-wrap: anywhere; }
.meaning { font-size: 16px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 14px; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #e5e8e8;
  vertical-align: top; overflow-wrap: break-word; }
th { background: #eaf2f8; font-weight: 600; }
tbody tr:nth-child(even) { background: #fbfcfc; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv { table-layout: fixed; }
td.val { font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.na { color: #95a5a6; cursor: help; }
.yes { color: var(--ok); font-weight: 600; }
.no { color: var(--bad); font-weight: 600; }
.missing, .note { color: var(--muted); font-size: 13.5px; }
.warn { background: #fef5e7; border-left: 4px solid var(--mid); padding: 6px 10px;
  font-size: 14px; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid #e5e8e8; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; font-size: 14px; }
dt { font-weight: 600; } dd { margin: 0; overflow-wrap: anywhere; }
code { font-size: 12.5px; overflow-wrap: anywhere; white-space: normal; }
tr.frozen td { color: var(--muted); }
summary { cursor: pointer; color: var(--muted); font-size: 13.5px; }
footer { color: var(--muted); font-size: 12px; margin-top: 28px; }
"""


PAGE_CSS = _CSS
"""The page style, shared with the width-study page (:mod:`plcore.report.study_html`)."""


def render_html(report: Report) -> str:
    """The whole report as one self-contained HTML page (no scripts, no external resources)."""
    title = (
        f"plcert report: {_VERDICT_TEXT.get(report.verdict, report.verdict)} "
        f"({report.problem.model_description or 'model'})"
    )
    version = report.provenance.versions.get("plcert", "")
    sections = [
        _verdict(report),
        _meaning(report),
        plots_section(all_plots(report)),
        problem_section(report),
        parameters_section(report),
        constants_section(report),
        initial_section(report),
        gd_section(report),
        sgd_section(report),
        validation_section(report),
        path_section(report),
        at_init_section(report),
        width_section(report),
        pl_eps_section(report),
        _conventions(report),
        _provenance(report),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        "<body><main>"
        "<h1>PL* convergence certificate</h1>"
        + "".join(sections)
        + f"<footer>Generated by plcert {esc(version)}; report schema {esc(report.schema_version)}."
        "</footer></main></body></html>\n"
    )
