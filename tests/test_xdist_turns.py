"""tests/xdist_turns.py: under ``pytest -n 2`` a ``serial`` test overlaps no other test, while the
ordinary tests do run side by side."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tests.generated_run import run_generated_module

pytest.importorskip("xdist")

MODULE = """
import json, os, time

import pytest


def _record(name, seconds):
    start = time.time()
    time.sleep(seconds)
    with open(os.environ["TURNS_LOG"], "a") as log:
        log.write(json.dumps([name, start, time.time()]) + "\\n")


@pytest.mark.parametrize("i", range(4))
def test_before(i):
    _record(f"ordinary-{i}", 0.4)


@pytest.mark.serial
@pytest.mark.parametrize("i", range(2))
def test_alone(i):
    _record(f"serial-{i}", 0.6)


@pytest.mark.parametrize("i", range(4, 8))
def test_after(i):
    _record(f"ordinary-{i}", 0.4)
"""


def _overlap(a: list, b: list) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def test_serial_tests_run_alone_and_the_others_side_by_side(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    serial: runs alone\n")
    log = tmp_path / "turns.jsonl"
    args = ["-q", "-n", "2", "-p", "tests.xdist_turns", "--strict-markers"]
    out = run_generated_module(tmp_path, MODULE, args, TURNS_LOG=str(log))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(runs) == 10
    serial = [r for r in runs if r[0].startswith("serial")]
    ordinary = [r for r in runs if r[0].startswith("ordinary")]
    clashes = [(s[0], o[0]) for s in serial for o in runs if o is not s and _overlap(s, o)]
    assert clashes == [], clashes
    # the check above means something only if the run was parallel at all
    assert any(_overlap(a, b) for a, b in itertools.combinations(ordinary, 2)), runs
