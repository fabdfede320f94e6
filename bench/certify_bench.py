"""End-to-end cost of ``plcore.certify`` on NTK tanh MLPs (one hidden layer), n = 16, d = 32.

Run ``python -m bench.certify_bench [--widths ...] [--budgets ...]``. Each (width, budget) case
runs in a fresh process (:func:`bench.targets.run_isolated`): wall seconds of the ``certify``
call, peak RSS above the process's value before the call, and the seconds spent in each stage,
timed from the ``on_progress`` callback (a stage lasts from its first report to the first report
of the next stage; "probing ball rho=..." reports are summed as one stage "probing ball").
Cases run cheapest first; ``PLCERT_BENCH_MAX_S`` (default 180) stops starting new ones.
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass, field

from bench.targets import Scoreboard, finish, format_table, max_seconds, rss_delta, run_isolated

N_SAMPLES = 16
INPUT_DIM = 32
DEFAULT_WIDTHS = (64, 256, 1024, 4096)
STANDARD_MAX_WIDTH = 1024
CASE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Case:
    width: int
    budget: str


@dataclass
class Result:
    width: int
    budget: str
    params: int
    seconds: float
    peak_mib: float
    verdict: str
    stages: dict[str, float] = field(default_factory=dict)


def _stage_name(stage: str) -> str:
    """'probing ball rho=0.57' -> 'probing ball' (drop key=value details)."""
    return re.sub(r"\s*\S+=\S+", "", stage).strip() or stage


def run_case(case: Case) -> Result:
    """Build the model and data, then time one ``certify`` call (runs in the child process)."""
    import torch

    from plcore import certify
    from plcore.dataset import Dataset
    from plcore.models.spec import load_spec_model
    from plcore.options import CertifyOptions

    spec = {
        "type": "mlp",
        "input_dim": INPUT_DIM,
        "widths": [case.width],
        "output_dim": 1,
        "activation": "tanh",
        "parameterization": "ntk",
        "seed": 0,
    }
    model = load_spec_model(spec)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N_SAMPLES, INPUT_DIM, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    y = torch.randn(N_SAMPLES, 1, generator=g, dtype=torch.float64)
    data = Dataset(X=X, y=y, sha256="0" * 64, name="unit-sphere")

    stages: dict[str, float] = {}
    current: list[tuple[str, float]] = []

    def on_progress(fraction: float, stage: str) -> None:
        now = time.perf_counter()
        name = _stage_name(stage)
        if current and current[0][0] == name:
            return
        if current:
            prev, since = current.pop()
            stages[prev] = stages.get(prev, 0.0) + now - since
        current.append((name, now))

    with rss_delta() as mem:
        start = time.perf_counter()
        report = certify(model, data, CertifyOptions(budget=case.budget), on_progress=on_progress)
        end = time.perf_counter()
    if current:
        prev, since = current.pop()
        stages[prev] = stages.get(prev, 0.0) + end - since
    return Result(
        case.width,
        case.budget,
        model.n_params,
        end - start,
        mem.mib,
        str(report.verdict),
        stages,
    )


def _cases(widths: list[int], budgets: list[str]) -> list[Case]:
    """Cheapest first, so that a wall budget drops the most expensive cases."""
    cost = {"fast": 1.0, "standard": 4.0, "thorough": 16.0}
    cases = [
        Case(w, b) for b in budgets for w in widths if not (b != "fast" and w > STANDARD_MAX_WIDTH)
    ]
    return sorted(cases, key=lambda c: cost.get(c.budget, 8.0) * (c.width + 512))


def main(argv: list[str] | None = None) -> None:
    """Print the cost table and the stage table of ``certify``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--widths", nargs="*", type=int, default=list(DEFAULT_WIDTHS))
    parser.add_argument("--budgets", nargs="*", default=["fast", "standard"])
    args = parser.parse_args(argv)
    cap = max_seconds(180.0)
    board = Scoreboard()
    print(f"certify on NTK tanh MLPs, n={N_SAMPLES}, d={INPUT_DIM}, CPU float64", flush=True)
    started = time.monotonic()
    rows: list[list[str]] = []
    results: list[Result] = []
    for case in _cases(args.widths, args.budgets):
        key = f"certify {case.budget} n={N_SAMPLES} width={case.width}"
        if time.monotonic() - started > cap:
            rows.append([str(case.width), "", case.budget, "skipped", "", "", "-", "-"])
            continue
        out = run_isolated(run_case, case, CASE_TIMEOUT_S)
        if isinstance(out, str):
            rows.append([str(case.width), "", case.budget, "error", "", out[:60], "-", "-"])
            continue
        results.append(out)
        check = board.check((key, out.seconds), (f"{key} peak RSS", out.peak_mib))
        rows.append(
            [
                str(out.width),
                f"{out.params:,}",
                out.budget,
                f"{out.seconds:.2f}",
                f"{out.peak_mib:.1f}",
                out.verdict,
                check.target_text,
                check.ok_text,
            ]
        )
    header = ["width", "params", "budget", "seconds", "peak RSS MiB", "verdict", "target", "ok"]
    print(format_table(header, rows), flush=True)
    if results:
        names: list[str] = []
        for r in results:
            names += [s for s in r.stages if s not in names]
        stage_rows = [
            [str(r.width), r.budget, *(f"{r.stages.get(s, 0.0):.2f}" for s in names)]
            for r in results
        ]
        print("\nseconds per stage (from on_progress)", flush=True)
        print(format_table(["width", "budget", *names], stage_rows), flush=True)
    if any(r[3] == "skipped" for r in rows):
        print(f"(skipped: past the {cap:g} s wall budget; PLCERT_BENCH_MAX_S=0 runs all)")
    finish(board, "certify_bench")


if __name__ == "__main__":
    main()
