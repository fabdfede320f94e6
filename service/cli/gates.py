"""CI gates of ``plcert certify`` and ``plcert submit --wait``: ``--min-rate``, ``--max-steps``
and ``--junit FILE`` (the checks themselves are :mod:`plcore.report.gates`).

The JUnit XML file has one ``<testsuite>`` (attributes ``tests``, ``failures``, ``errors``,
``skipped``, ``time`` in seconds, ``timestamp``) inside ``<testsuites>``, with one
``<testcase>`` per check (``certified``; ``rate`` with ``--min-rate``; ``steps`` with
``--max-steps``); a failed check has a ``<failure message="...">`` with the numbers, and a run
that could not produce a report (bad input, a failed or canceled job) has a single
``certified`` test case with an ``<error>``. Verdict, tier and the rate are also written as
``<properties>``.

Exit code: 1 when a check that was asked for fails. ``--junit`` asks for the ``certified``
check (as ``--fail-if-not-certified`` does), so that the file and the exit code always agree.
"""

from __future__ import annotations

import contextlib
import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from plcore.report.gates import GateResult, certified_rate, evaluate_gates
from plcore.report.schema import Report

EXIT_OK = 0
EXIT_GATE_FAILED = 1

JunitOption = Annotated[
    Path | None,
    typer.Option(
        "--junit",
        metavar="FILE",
        help="Write a JUnit XML result (one test case per check) for CI; implies "
        "--fail-if-not-certified.",
    ),
]
MinRateOption = Annotated[
    float | None,
    typer.Option(
        "--min-rate",
        metavar="X",
        help="Fail (exit 1) unless the certified per-step loss decrease 1 - rate = eta*mu is "
        "at least X (0 < X <= 1; rate is the report's gd.rate or path.rate, L_t+1 <= rate L_t).",
    ),
]
MaxStepsOption = Annotated[
    int | None,
    typer.Option(
        "--max-steps",
        metavar="N",
        min=0,
        help="Fail (exit 1) unless the certified number of GD steps to the target loss is at "
        "most N.",
    ),
]


class GateUsageError(ValueError):
    """A gate option with an impossible value."""


def check_gate_options(min_rate: float | None, junit: Path | None) -> None:
    """Refuse impossible values before any work (the caller exits 2)."""
    if min_rate is not None and not (math.isfinite(min_rate) and 0.0 < min_rate <= 1.0):
        raise GateUsageError(
            f"--min-rate must be in (0, 1] (the per-step loss decrease 1 - rate), got {min_rate}"
        )
    if junit is not None and junit.is_dir():
        raise GateUsageError(f"--junit must name a file, but {junit} is a folder")


def apply_gates(
    report: Report,
    *,
    suite: str,
    elapsed_s: float,
    junit: Path | None,
    min_rate: float | None,
    max_steps: int | None,
    fail_if_not_certified: bool,
) -> tuple[int, list[GateResult]]:
    """Evaluate the checks, write the JUnit file if asked, and return the exit code (0 or 1)
    with the results.

    Raises:
        OSError: the JUnit file could not be written.
    """
    results = evaluate_gates(report, min_rate=min_rate, max_steps=max_steps)
    if junit is not None:
        rate = certified_rate(report)
        properties: dict[str, str] = {"verdict": report.verdict, "tier": report.tier}
        if rate is not None:
            properties["rate"] = repr(rate.contraction)
            properties["rate_decrease"] = repr(rate.decrease)
            properties["steps_to_target"] = str(rate.steps_to_target)
        write_junit(junit, junit_xml(suite, results, elapsed_s, properties=properties))
    counted = [
        r for r in results if r.name != "certified" or fail_if_not_certified or junit is not None
    ]
    failed = any(not r.passed for r in counted)
    return (EXIT_GATE_FAILED if failed else EXIT_OK), results


@dataclass
class GateRun:
    """The gate options of one command run, and when it started (the JUnit ``time``)."""

    suite: str
    junit: Path | None
    min_rate: float | None
    max_steps: int | None
    fail_if_not_certified: bool
    started: float = field(default_factory=time.monotonic)

    @property
    def asked(self) -> bool:
        """A gate option was given (then each check's result is printed)."""
        return self.junit is not None or self.min_rate is not None or self.max_steps is not None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def write_error(self, message: str) -> None:
        """The JUnit file of a run that ended without a report (when --junit was given)."""
        write_error_junit(self.junit, self.suite, message, self.elapsed())

    def apply(self, report: Report) -> int:
        """:func:`apply_gates`, results printed; the exit code (0 or 1).

        Raises:
            OSError: the JUnit file could not be written.
        """
        code, results = apply_gates(
            report,
            suite=self.suite,
            elapsed_s=self.elapsed(),
            junit=self.junit,
            min_rate=self.min_rate,
            max_steps=self.max_steps,
            fail_if_not_certified=self.fail_if_not_certified,
        )
        print_gate_results(results, shown=self.asked)
        return code


def print_gate_results(results: Sequence[GateResult], *, shown: bool) -> None:
    """One ``PASS name: message`` / ``FAIL name: message`` line per check on stdout."""
    if not shown:
        return
    for r in results:
        typer.echo(f"{'PASS' if r.passed else 'FAIL'} {r.name}: {r.message}")


def junit_xml(
    suite: str,
    results: Sequence[GateResult],
    elapsed_s: float,
    *,
    properties: dict[str, str] | None = None,
    error: str | None = None,
) -> str:
    """The JUnit XML document of ``results`` (or of a single ``error``)."""
    failures = sum(not r.passed for r in results) if error is None else 0
    tests = len(results) if error is None else 1
    counts = {
        "tests": str(tests),
        "failures": str(failures),
        "errors": "1" if error is not None else "0",
        "skipped": "0",
        "time": f"{elapsed_s:.3f}",
    }
    root = ET.Element("testsuites", {"name": "plcert", **counts})
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
    ts = ET.SubElement(root, "testsuite", {"name": suite, **counts, "timestamp": stamp})
    if properties:
        props = ET.SubElement(ts, "properties")
        for name, value in properties.items():
            ET.SubElement(props, "property", {"name": name, "value": value})
    if error is not None:
        case = _case(ts, "certified", elapsed_s)
        ET.SubElement(case, "error", {"message": error, "type": "error"}).text = error
    for i, r in enumerate(results if error is None else ()):
        case = _case(ts, r.name, elapsed_s if i == 0 else 0.0)
        if r.passed:
            ET.SubElement(case, "system-out").text = r.message
        else:
            ET.SubElement(case, "failure", {"message": r.message, "type": r.name}).text = r.message
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _case(suite: ET.Element, name: str, seconds: float) -> ET.Element:
    attrs = {"classname": "plcert", "name": name, "time": f"{seconds:.3f}"}
    return ET.SubElement(suite, "testcase", attrs)


def write_junit(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_error_junit(path: Path | None, suite: str, message: str, elapsed_s: float) -> None:
    """Best effort: a JUnit file saying why there is no report (the run fails either way)."""
    if path is None:
        return
    with contextlib.suppress(OSError):
        write_junit(path, junit_xml(suite, [], elapsed_s, error=message))
