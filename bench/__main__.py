"""Run the benchmarks and print their tables.

``python -m bench`` runs every ``*_bench`` module in this folder (each exposes ``main()``);
``python -m bench --only C1-128 C2 [--budgets fast standard]`` runs only those issue-8
workloads (:mod:`bench.workloads_bench`), which record their figures in bench/results.md and
bench/results.json. Speed and memory targets live here, never in timed unit tests.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="issue-8 workloads to run (C1-128, C2, ...)")
    parser.add_argument("--budgets", nargs="*", default=["fast"])
    args = parser.parse_args(argv)
    if args.only:
        from bench import workloads_bench

        try:
            workloads_bench.main(["--only", *args.only, "--budgets", *args.budgets])
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0
    folder = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.endswith("_bench"))
    if not names:
        print("no benchmarks found", file=sys.stderr)
        return 1
    failed: list[str] = []
    for name in names:
        print(f"\n== {name} ==", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main([])
        except SystemExit as exc:  # strict mode (PLCERT_BENCH_STRICT=1) exits on a missed target
            if exc.code not in (None, 0):
                failed.append(name)
    if failed:
        print(f"\nmissed targets in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
