"""The real-size workloads C1-C4 of issue 8 through ``plcore.certify``, with per-stage times,
peak memory and the speed-up ratios of the methods they rely on, measured in the same run.

``python -m bench.workloads_bench [--only C1-128 C2 ...] [--budgets fast standard]`` runs each
(workload, budget) case in a fresh process and MERGES the results into bench/results.json
(keyed by case, so a partial run keeps the other figures) and rewrites bench/results.md from it.
Ratios (same process, same machine state, one workload each):

* ``output_hvp_ratio``: time of one Hess(F_i) v product on all n samples (the old method) over
  the same product on sample i alone (the new one); the values agree (checked in tests);
* ``kernel_ratio``: the reference tangent kernel's time over the structured one's (only where
  N * m <= 5e7: on C2 the reference method alone takes many minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.targets import Scoreboard, finish, format_table, rss_delta, run_isolated

HERE = Path(__file__).parent
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "results.md"
CASE_TIMEOUT_S = 1800.0
#: issue 8 targets (2-core machine): seconds of certify per (workload, budget)
TARGET_S: dict[tuple[str, str], float] = {
    ("C1-128", "fast"): 60,
    ("C1-128", "standard"): 300,
    ("C2", "fast"): 60,
    ("C2", "standard"): 300,
    ("C4", "fast"): 60,
    ("C4", "standard"): 300,
    ("C1-512", "standard"): 900,
    ("C3", "standard"): 900,
}


@dataclass
class CaseResult:
    workload: str
    budget: str
    params: int
    n_outputs: int
    seconds: float
    peak_mib: float
    verdict: str
    hessian_norm: float | None
    timings: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    measured_at: str = ""
    machine: str = ""


def _time(fn: object, repeat: int = 3) -> float:
    assert callable(fn)
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def _ratios(name: str) -> dict[str, float]:
    import torch

    from bench.workloads import BUILDERS
    from plcore.certificate.assemble import place
    from plcore.hessian.hvp import output_hvp
    from plcore.kernel import tangent_kernel

    w = BUILDERS[name]()
    model, data = place(w.model, w.data, torch.device("cpu"))
    X, k = data.X, model.output_dim
    g = torch.Generator().manual_seed(0)
    u = torch.randn(model.n_params, generator=g, dtype=torch.float64)
    e_all = torch.zeros(X.shape[0] * k, dtype=torch.float64)
    e_all[0] = 1.0
    e_one = torch.zeros(k, dtype=torch.float64)
    e_one[0] = 1.0
    full = _time(lambda: output_hvp(model, X, e_all, u))
    one = _time(lambda: output_hvp(model, X[:1], e_one, u))
    out = {"output_hvp_all_s": full, "output_hvp_one_s": one, "output_hvp_ratio": full / one}
    if X.shape[0] * k * model.n_params <= 5e7:  # the reference kernel is slow on C2-sized J
        ref = _time(lambda: tangent_kernel(model, X, "reference"), repeat=1)
        st = _time(lambda: tangent_kernel(model, X, "structured"), repeat=1)
        out |= {"kernel_reference_s": ref, "kernel_structured_s": st, "kernel_ratio": ref / st}
    return out


def run_case(case: tuple[str, str]) -> CaseResult:
    """Build the workload and time one ``certify`` call (in the child process)."""
    import torch

    from bench.workloads import BUILDERS
    from plcore import CertifyOptions, certify
    from plcore.certificate.timings import StageClock
    from plcore.hessian.hvp import warm_up

    name, budget = case
    w = BUILDERS[name]()
    # as a worker does when it starts: the lazy imports of the first second-order passes
    # (torch._dynamo, sympy; 1-3 s) are paid before the timed run
    warm_up()
    last = [""]

    def on_progress(fraction: float, stage: str) -> None:
        key = StageClock.key(stage)
        if key != last[0]:
            last[0] = key
            print(f"  {name} {budget}: {time.perf_counter() - start:7.1f} s  {key}", flush=True)

    with rss_delta() as mem:
        start = time.perf_counter()
        report = certify(w.model, w.data, CertifyOptions(budget=budget), on_progress=on_progress)
        seconds = time.perf_counter() - start
    ratios = _ratios(name)
    load = os.getloadavg()[0]
    return CaseResult(
        workload=name,
        budget=budget,
        params=w.model.n_params,
        n_outputs=report.problem.n_constraints,
        seconds=seconds,
        peak_mib=mem.mib,
        verdict=str(report.verdict),
        hessian_norm=report.initial.hessian_norm,
        timings=dict(report.timings),
        ratios=ratios,
        measured_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=(
            f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), load average {load:.1f} at the end"
        ),
    )


def _load() -> dict[str, dict[str, object]]:
    if RESULTS_JSON.exists():
        return dict(json.loads(RESULTS_JSON.read_text()))
    return {}


def _write(results: dict[str, dict[str, object]]) -> None:
    RESULTS_JSON.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    lines = [
        "# Benchmark results (issue 8 workloads)",
        "",
        "Written by `python -m bench.workloads_bench` (`make bench`); each row is one `certify`",
        "call in a fresh process, CPU float64, torch threads as named in each row (on a machine",
        "shared with other torch processes use 1 thread: 2 threads under contention run many",
        "times slower). Figures are what was measured at the load named in each row. The",
        "process first runs `plcore.hessian.hvp.warm_up()` untimed, as a worker does at start",
        "(the lazy imports of the first second-order passes, 1-3 s).",
        "",
        "Baseline from issue 8 (before this work, quiet 2-core machine): C1-128 fast 438 s",
        "(hessian norm 112 s, radius search 313 s, checking run 13 s). Before this session's",
        "changes: C2 fast 336 s, C1-512 standard over 16 min (did not finish).",
        "",
        "| case | params | N | budget | seconds | target s | peak RSS MiB | verdict | stages (s) "
        "| output-HVP ratio | kernel ratio | measured | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(results):
        r = results[key]
        timings = r.get("timings") or {}
        assert isinstance(timings, dict)
        stages = ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
        ratios = r.get("ratios") or {}
        assert isinstance(ratios, dict)
        target = TARGET_S.get((str(r["workload"]), str(r["budget"])))
        hvp = ratios.get("output_hvp_ratio")
        kr = ratios.get("kernel_ratio")
        lines.append(
            f"| {r['workload']} | {r['params']:,} | {r['n_outputs']} | {r['budget']} "
            f"| {float(r['seconds']):.1f} | {'-' if target is None else f'{target:g}'} "
            f"| {'-' if r.get('peak_mib') is None else format(float(r['peak_mib']), '.0f')} "
            f"| {r['verdict']} | {stages} "
            f"| {'-' if hvp is None else f'{hvp:.1f}'} | {'-' if kr is None else f'{kr:.1f}'} "
            f"| {r['measured_at']} | {r['machine']} |"
        )
    RESULTS_MD.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Run the selected cases, print their table, merge them into bench/results.*."""
    from bench.workloads import BUILDERS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--budgets", nargs="*", default=["fast"])
    args = parser.parse_args(argv)
    board = Scoreboard()
    results = _load()
    rows: list[list[str]] = []
    for name in args.only:
        for budget in args.budgets:
            out = run_isolated(run_case, (name, budget), CASE_TIMEOUT_S)
            if isinstance(out, str):
                rows.append([name, budget, "error", out[:80], "-"])
                continue
            results[f"{name} {budget}"] = asdict(out)
            _write(results)
            target = TARGET_S.get((name, budget))
            ok = "-" if target is None else ("yes" if out.seconds <= target else "no")
            if target is not None and out.seconds > target:
                board.misses.append(f"{name} {budget}: {out.seconds:.1f} s (target {target} s)")
            rows.append([name, budget, f"{out.seconds:.1f}", f"{out.peak_mib:.0f}", ok])
            print(f"{name} {budget}: {out.seconds:.1f} s, stages {out.timings}", flush=True)
    print(format_table(["case", "budget", "seconds", "peak MiB", "target met"], rows))
    finish(board, "workloads_bench")


if __name__ == "__main__":
    main()
