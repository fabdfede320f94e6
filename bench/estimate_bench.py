"""Accuracy of the dry-run estimate (``plcore.estimate.cost``) against measured runs.

Run ``python -m bench.estimate_bench [--fit]``. Each case certifies an NTK tanh MLP in a fresh
spawned process with one torch thread (as a worker pool process with one core runs it) and
compares the time of ``certify`` (imports excluded, first-call warm-up included) and the peak
resident size with the estimate. The estimate is the wall time of a job that has its core to
itself; on a shared machine the process's CPU time is the better measure of that, so both are
shown and the ratio and the fit use the CPU time. ``--fit`` also prints the cost-model
constants that minimise the worst time ratio over the cases (to paste into ``CALIBRATED`` after
a change in the numerical core or on another machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import time
from typing import Any

from bench.targets import format_table, max_seconds, peak_rss_mib, run_isolated

# (name, hidden widths, n samples, input dim, budget)
CASES: list[tuple[str, list[int], int, int, str]] = [
    ("fast w=16 n=8", [16], 8, 2, "fast"),
    ("fast w=32x32 n=16", [32, 32], 16, 2, "fast"),
    ("fast w=64 n=16 d=32", [64], 16, 32, "fast"),
    ("standard w=64 n=16 d=32", [64], 16, 32, "standard"),
    ("fast w=256x256 n=32 d=8", [256, 256], 32, 8, "fast"),
    ("fast w=1024 n=16 d=32", [1024], 16, 32, "fast"),
    ("fast w=16 n=4000 d=4 (N > m: kernel only)", [16], 4000, 4, "fast"),
    # not used by --fit: the check that the constants carry over to other sizes
    ("holdout fast w=16 n=6000 d=4 (N > m: kernel only)", [16], 6000, 4, "fast"),
    ("holdout fast w=128x128 n=24 d=4", [128, 128], 24, 4, "fast"),
    ("holdout standard w=32 n=8 d=2", [32], 8, 2, "standard"),
    ("holdout fast w=512 n=32 d=16", [512], 32, 16, "fast"),
]


def _problem(widths: list[int], n: int, d: int) -> tuple[Any, Any]:
    import numpy as np

    from plcore import load_dataset, load_model

    spec = {
        "type": "mlp",
        "input_dim": d,
        "widths": widths,
        "output_dim": 1,
        "activation": "tanh",
        "seed": 0,
    }
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.standard_normal(n)
    data = json.dumps({"X": X.tolist(), "y": y.tolist()}).encode()
    return load_model(spec), load_dataset(data, "json")


def measure(case: tuple[str, list[int], int, int, str]) -> dict[str, float]:
    """Run one case (in a fresh process): seconds of certify and peak RSS in bytes."""
    import torch

    torch.set_num_threads(1)
    from plcore import CertifyOptions, certify

    _, widths, n, d, budget = case
    model, data = _problem(widths, n, d)
    start, cpu = time.perf_counter(), time.process_time()
    certify(model, data, CertifyOptions(budget=budget))
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "rss_bytes": peak_rss_mib() * 2**20,
    }


def estimate(case: tuple[str, list[int], int, int, str], cost_model: Any = None) -> Any:
    from plcore import CertifyOptions
    from plcore.estimate.cost import CALIBRATED, estimate_for

    _, widths, n, d, budget = case
    model, data = _problem(widths, n, d)
    return estimate_for(model, data, CertifyOptions(budget=budget), cost_model or CALIBRATED)


def fit(cases: list[Any], measured: list[float]) -> Any:
    """Grid search of the time constants for the smallest worst-case |log ratio|."""
    from plcore.estimate.cost import CALIBRATED

    best: tuple[float, Any] = (math.inf, CALIBRATED)
    grid = itertools.product(
        [2e-5, 4e-5, 6e-5, 1e-4, 2e-4],  # seconds per layer pass
        [5e8, 1e9, 2e9, 4e9],  # flops per second
        [0.0, 0.5, 1.0, 1.5],  # start-up seconds
    )
    for per_layer, rate, startup in grid:
        cm = dataclasses.replace(
            CALIBRATED,
            seconds_per_layer_pass=per_layer,
            flops_per_second=rate,
            blas_flops_per_second=4 * rate,
            startup_s=startup,
        )
        worst = max(
            abs(math.log(estimate(c, cm).time_s / t)) for c, t in zip(cases, measured, strict=True)
        )
        if worst < best[0]:
            best = (worst, cm)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="Also fit the time constants.")
    parser.add_argument("--only", default="", help="Run only the cases whose name has this.")
    args, _ = parser.parse_known_args()
    budget_s = max_seconds(600.0)
    started = time.monotonic()
    rows, done, seconds = [], [], []
    for case in [c for c in CASES if args.only in c[0]]:
        if time.monotonic() - started > budget_s:
            rows.append([case[0], "-", "-", "-", "-", "-", "-", "skipped (PLCERT_BENCH_MAX_S)"])
            continue
        got = run_isolated(measure, case, timeout_s=600)
        est = estimate(case)
        if isinstance(got, str):
            rows.append([case[0], f"{est.time_s:.1f}", "-", "-", "-", "-", "-", got[:40]])
            continue
        if not case[0].startswith("holdout"):
            done.append(case)
            seconds.append(got["cpu_seconds"])
        rows.append(
            [
                case[0],
                f"{est.time_s:.1f}",
                f"{got['seconds']:.1f}",
                f"{got['cpu_seconds']:.1f}",
                f"{got['cpu_seconds'] / est.time_s:.2f}",
                f"{est.peak_memory_bytes / 2**20:.0f}",
                f"{got['rss_bytes'] / 2**20:.0f}",
                f"{got['rss_bytes'] / est.peak_memory_bytes:.2f}",
            ]
        )
    header = ["case", "est s", "wall s", "CPU s", "CPU/est", "est MiB", "RSS MiB", "RSS/est"]
    print(format_table(header, rows), flush=True)
    if args.fit and done:
        worst, cm = fit(done, seconds)
        print(f"fitted (worst ratio {math.exp(worst):.2f}x): {cm}", flush=True)


if __name__ == "__main__":
    main()
