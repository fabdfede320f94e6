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
    for name in names:
        print(f"\n== {name} ==", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
