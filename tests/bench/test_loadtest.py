"""bench.loadtest: the parts that need no server (the run itself is `make loadtest`)."""

from __future__ import annotations

from pathlib import Path

from bench.loadtest import Tally, percentile, table, write_section


def test_write_section_replaces_only_its_own_markers(tmp_path: Path) -> None:
    doc = tmp_path / "reliability.md"
    doc.write_text(
        "# Reliability\n\nintro\n\n"
        "<!-- loadtest:embedded -->\nold\n<!-- /loadtest:embedded -->\n\nafter\n"
    )
    write_section(doc, "embedded", "new table")
    write_section(doc, "distributed", "first run")
    write_section(doc, "distributed", "second run")
    text = doc.read_text()
    assert "old" not in text and "first run" not in text
    assert text.count("<!-- loadtest:embedded -->") == 1 and "new table" in text
    assert text.index("new table") < text.index("after") < text.index("second run")
    assert text.count("<!-- /loadtest:distributed -->") == 1


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


def test_table_counts_5xx_and_failed_requests() -> None:
    tally = Tally()
    tally.record("submit", "202", 0.010)
    tally.record("poll", "200", 0.002)
    tally.record("poll", "503", 0.004)
    tally.record("list", "ReadTimeout", 60.0)
    text = table("embedded", "plcert serve", tally, 10.0, 50, 10**7)
    assert "5xx answers and failed requests: 2." in text
    assert "| `GET /v1/certifications/{id}` | 2 | 200: 1, 503: 1 | 2 | 4 | 4 |" in text
    assert "| `GET /v1/certifications/{id}/report` | 0 |" in text
