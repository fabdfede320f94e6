"""Speed and memory targets of the benchmarks, and the helpers that check and print them.

Targets live here, never in timed unit tests. Every ``*_bench.py`` module looks its cases up in
:data:`TARGETS` by name and prints a table whose last two columns are ``target`` and ``ok``
(``yes`` / ``no``; ``-`` where a row has no target or did not run).

A missed target is reported, not fatal: :func:`finish` raises ``SystemExit(1)`` after the table
only when the environment variable ``PLCERT_BENCH_STRICT=1`` is set. ``PLCERT_BENCH_MAX_S``
caps the wall seconds of one module (cases run cheapest first; the rest are shown as skipped;
``0`` runs every case).

The numbers are for the 2-core CPU development machine (torch CPU build, float64) and the
problems named in each key; a GPU or a bigger machine should beat them comfortably.

Memory is the peak resident set size (``ru_maxrss``) of a fresh process running one case,
above its value just before the case: it includes torch's CPU allocations, which ``tracemalloc``
does not see. (psutil is not a dependency; its RSS is a current value, not a peak.)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import resource
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Target:
    """An upper limit on one measured quantity: ``value <= limit`` (in ``unit``)."""

    limit: float
    unit: str

    def met(self, value: float) -> bool:
        return value <= self.limit

    def __str__(self) -> str:
        return f"<= {self.limit:g} {self.unit}"


TARGETS: Final[dict[str, Target]] = {
    # plcore.certification on an NTK tanh MLP, one hidden layer, n = 16 unit-sphere points in R^32
    "certify fast n=16 width=64": Target(10, "s"),
    "certify fast n=16 width=256": Target(15, "s"),
    "certify fast n=16 width=1024": Target(30, "s"),
    "certify fast n=16 width=4096": Target(90, "s"),
    "certify standard n=16 width=64": Target(45, "s"),
    "certify standard n=16 width=256": Target(60, "s"),
    "certify standard n=16 width=1024": Target(120, "s"),
    "certify fast n=16 width=4096 peak RSS": Target(512, "MiB"),
    "certify standard n=16 width=1024 peak RSS": Target(512, "MiB"),
    # plcore.hessian, tanh MLP with two hidden layers of width w, n = 16, d = 32, "fast" budget
    "hessian_tensor_norm m~1e3": Target(2, "s"),
    "hessian_tensor_norm m~1e4": Target(3, "s"),
    "hessian_tensor_norm m~1e5": Target(10, "s"),
    "hessian_tensor_norm m~5e5": Target(45, "s"),
    "max_output_hessian_norm m~1e3": Target(1, "s"),
    "max_output_hessian_norm m~1e4": Target(1, "s"),
    "max_output_hessian_norm m~1e5": Target(3, "s"),
    "max_output_hessian_norm m~5e5": Target(15, "s"),
    "hessian m~5e5 peak RSS": Target(1024, "MiB"),
    # plcert serve (embedded SQLite store, filesystem broker, one worker) on loopback
    "serve start to /readyz": Target(30, "s"),
    "POST /v1/certifications p95": Target(200, "ms"),
    "GET /v1/certifications/{id} p95": Target(50, "ms"),
}


@dataclass
class Check:
    """The targets of one table row and whether each was met."""

    targets: list[str]
    results: list[bool]

    @property
    def target_text(self) -> str:
        return "; ".join(str(TARGETS[t]) for t in self.targets) if self.targets else "-"

    @property
    def ok_text(self) -> str:
        if not self.results:
            return "-"
        return "yes" if all(self.results) else "no"


class Scoreboard:
    """Collects the target checks of one benchmark module."""

    def __init__(self) -> None:
        self.misses: list[str] = []

    def check(self, *measured: tuple[str, float | None]) -> Check:
        """Check each (target name, value); a name missing from TARGETS or a None value is
        skipped."""
        names: list[str] = []
        results: list[bool] = []
        for name, value in measured:
            target = TARGETS.get(name)
            if target is None or value is None:
                continue
            names.append(name)
            ok = target.met(value)
            results.append(ok)
            if not ok:
                self.misses.append(f"{name}: {value:.4g} {target.unit} (target {target})")
        return Check(names, results)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def strict() -> bool:
    return os.environ.get("PLCERT_BENCH_STRICT", "") == "1"


def max_seconds(default: float) -> float:
    """The per-module wall budget: ``PLCERT_BENCH_MAX_S`` (``0`` = no cap) or ``default``."""
    raw = os.environ.get("PLCERT_BENCH_MAX_S", "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = default
    return value if value > 0 else float("inf")


def finish(board: Scoreboard, name: str) -> None:
    """Print the missed targets; exit 1 on a miss when PLCERT_BENCH_STRICT=1."""
    if not board.misses:
        print(f"{name}: every target met", flush=True)
        return
    print(f"{name}: {len(board.misses)} target(s) missed:", flush=True)
    for miss in board.misses:
        print(f"  - {miss}", flush=True)
    if strict():
        raise SystemExit(1)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class RssDelta:
    mib: float = 0.0


@contextmanager
def rss_delta() -> Iterator[RssDelta]:
    """Measure the growth of the peak RSS over the block (meaningful in a fresh process)."""
    out = RssDelta()
    base = peak_rss_mib()
    try:
        yield out
    finally:
        out.mib = peak_rss_mib() - base


def _child(fn: Callable[[T], R], arg: T, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        queue.put(("ok", fn(arg)))
    except BaseException:  # reported to the parent, which prints it in the table
        queue.put(("error", traceback.format_exc(limit=3)))


def run_isolated(fn: Callable[[T], R], arg: T, timeout_s: float) -> R | str:
    """Run ``fn(arg)`` in a fresh (spawned) process, so that its peak memory is its own.

    Returns the result, or a one-line error text when it raised or ran past ``timeout_s``.
    ``fn`` must be a module-level function and ``arg`` / the result picklable.
    """
    ctx = mp.get_context("spawn")
    queue: mp.Queue[Any] = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, arg, queue), daemon=True)
    proc.start()
    deadline = time.monotonic() + timeout_s
    status, payload = "error", f"no result within {timeout_s:g} s"
    try:
        while time.monotonic() < deadline:
            try:
                status, payload = queue.get(timeout=1.0)
                break
            except queue_mod.Empty:
                if not proc.is_alive():  # a last look: it may have put its result and exited
                    try:
                        status, payload = queue.get(timeout=2.0)
                    except queue_mod.Empty:
                        status, payload = "error", f"the process died (exit {proc.exitcode})"
                    break
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status == "ok":
        return payload  # type: ignore[no-any-return]
    return str(payload).strip().splitlines()[-1]
