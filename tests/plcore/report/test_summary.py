"""The terminal summary: plain fixed-width text and the rich table."""

from __future__ import annotations

import io

from rich.console import Console

from plcore.report.summary import summary_rich_table, summary_rows, summary_table
from tests.plcore.report.sample_reports import full_report, minimal_report, path_report


def test_plain_summary_aligns_values_in_one_column() -> None:
    text = summary_table(full_report())
    lines = text.splitlines()
    assert lines[0].startswith("verdict")
    assert "certified (estimated)" in lines[0]
    starts = {len(line) - len(line.split("  ", 1)[1].lstrip()) for line in lines}
    assert len(starts) == 1


def test_plain_summary_gives_brackets_and_the_step_counts() -> None:
    text = summary_table(full_report())
    assert "9.31 (bound 9.45)" in text
    assert "0.21 (bound -)" in text
    assert "0.041 (bound 0.0365)" in text
    assert "29495 (loss 1.25e-05)" in text
    assert "SGD s=8" in text
    assert "from step 400" in text


def test_summary_of_a_minimal_report_shows_dashes_for_missing_numbers() -> None:
    rows = dict(summary_rows(minimal_report()))
    assert rows["verdict"] == "not_certified (rigorous)"
    assert rows["GD step (sum / mse)"] == "- / -"
    assert "checking run" not in rows


def test_rich_table_does_not_interpret_markup_in_user_strings() -> None:
    report = full_report(description="net [bold]x[/bold]")
    buf = io.StringIO()
    Console(file=buf, width=120, color_system=None).print(summary_rich_table(report))
    out = buf.getvalue()
    assert "net [bold]x[/bold]" in out
    assert "certified (estimated)" in out


def test_summary_marks_gd_predictions_that_are_not_certified_at_init() -> None:
    rows = dict(summary_rows(path_report()))
    assert rows["rate 1 - eta mu"].endswith("(not certified at w0)")
    assert rows["path certificate"] == "from step 166: step 1.404, rate 0.9919"
    assert "not certified" not in dict(summary_rows(full_report()))["rate 1 - eta mu"]
