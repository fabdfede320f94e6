"""Run every benchmark module in this folder and print its table.

Speed and memory targets live here, never in timed unit tests. Each module exposes ``main()``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    folder = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.endswith("_bench"))
    if not names:
        print("no benchmarks found", file=sys.stderr)
        return 1
    failed: list[str] = []
    for name in names:
        print(f"\n== {name} ==", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main()
        except SystemExit as exc:  # strict mode (PLCERT_BENCH_STRICT=1) exits on a missed target
            if exc.code not in (None, 0):
                failed.append(name)
    if failed:
        print(f"\nmissed targets in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
