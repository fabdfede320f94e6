"""Cost of the Hessian norms of ``plcore.hessian`` as the parameter count m grows (1e3 .. 5e5).

Run ``python -m bench.hessian_bench [--budget fast|standard|thorough]``. The models are tanh MLPs
with two hidden layers of width w (NTK parameterization), d = 32, on n = 16 Gaussian inputs, so
m = w^2 + 35 w + 1. Each size runs in a fresh process; the solver settings are those of the
named certify budget (:data:`plcore.certificate.budget.BUDGETS`), as ``certify`` would call them.
Columns: seconds, outer iterations (tensor norm) or Lanczos matvecs (per-output norm), whether
the solver converged, restarts, Hessian-vector products, and the peak RSS of the process above
its value after building the model.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from bench.targets import Scoreboard, finish, format_table, max_seconds, rss_delta, run_isolated

N_SAMPLES = 16
INPUT_DIM = 32
# hidden width -> label of m (m = w^2 + 35 w + 1)
SIZES: tuple[tuple[int, str], ...] = ((20, "1e3"), (84, "1e4"), (300, "1e5"), (690, "5e5"))
CASE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Case:
    width: int
    label: str
    budget: str


@dataclass(frozen=True)
class Row:
    quantity: str
    seconds: float
    iterations: int
    converged: bool
    restarts: int | None
    matvecs: int | None
    value: float


@dataclass(frozen=True)
class Result:
    width: int
    label: str
    params: int
    rows: tuple[Row, ...]
    peak_mib: float


def run_case(case: Case) -> Result:
    """Time ``hessian_tensor_norm`` and ``max_output_hessian_norm`` (runs in the child)."""
    import torch

    from plcore.certificate.budget import get_budget
    from plcore.hessian import hessian_tensor_norm, max_output_hessian_norm
    from plcore.models.spec import load_spec_model

    b = get_budget(case.budget)
    spec = {
        "type": "mlp",
        "input_dim": INPUT_DIM,
        "widths": [case.width, case.width],
        "output_dim": 1,
        "activation": "tanh",
        "parameterization": "ntk",
        "seed": 0,
    }
    model = load_spec_model(spec)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N_SAMPLES, INPUT_DIM, generator=g, dtype=torch.float64)
    with rss_delta() as mem:
        t0 = time.perf_counter()
        hn = hessian_tensor_norm(
            model,
            X,
            generator=g,
            restarts=b.power_restarts,
            tol=b.hessian_tol,
            max_iter=b.hessian_max_iter,
            krylov_dim=b.krylov_dim,
        )
        t1 = time.perf_counter()
        mo = max_output_hessian_norm(
            model,
            X,
            generator=g,
            scan_limit=b.output_hessian_scan,
            tol=b.hessian_tol,
            krylov_dim=b.krylov_dim,
        )
        t2 = time.perf_counter()
    rows = (
        Row(
            "hessian_tensor_norm",
            t1 - t0,
            hn.iterations,
            hn.converged,
            hn.restarts,
            hn.matvecs,
            hn.value,
        ),
        Row("max_output_hessian_norm", t2 - t1, mo.iterations, mo.converged, None, None, mo.value),
    )
    return Result(case.width, case.label, model.n_params, rows, mem.mib)


def main(argv: list[str] | None = None) -> None:
    """Print seconds, iterations, convergence and restarts of both Hessian norms per size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", default="fast", choices=["fast", "standard", "thorough"])
    args = parser.parse_args(argv)
    cap = max_seconds(180.0)
    board = Scoreboard()
    print(
        f"Hessian norms, tanh MLP [w, w], n={N_SAMPLES}, d={INPUT_DIM}, "
        f"'{args.budget}' budget settings, CPU float64",
        flush=True,
    )
    started = time.monotonic()
    table: list[list[str]] = []
    for width, label in SIZES:
        if time.monotonic() - started > cap:
            table.append([f"~{label}", str(width), "skipped", *[""] * 6, "-", "-"])
            continue
        out = run_isolated(run_case, Case(width, label, args.budget), CASE_TIMEOUT_S)
        if isinstance(out, str):
            table.append([f"~{label}", str(width), "error", out[:60], *[""] * 5, "-", "-"])
            continue
        for i, r in enumerate(out.rows):
            checks: list[tuple[str, float | None]] = [(f"{r.quantity} m~{label}", r.seconds)]
            peak = out.peak_mib if i == len(out.rows) - 1 else None
            checks.append((f"hessian m~{label} peak RSS", peak))
            check = board.check(*checks)
            table.append(
                [
                    f"{out.params:,}",
                    str(width),
                    r.quantity,
                    f"{r.seconds:.2f}",
                    str(r.iterations),
                    "yes" if r.converged else "no",
                    "-" if r.restarts is None else str(r.restarts),
                    "-" if r.matvecs is None else str(r.matvecs),
                    f"{peak:.1f}" if peak is not None else "",
                    check.target_text,
                    check.ok_text,
                ]
            )
    header = [
        "m",
        "w",
        "quantity",
        "seconds",
        "iterations",
        "converged",
        "restarts",
        "HVPs",
        "peak RSS MiB",
        "target",
        "ok",
    ]
    print(format_table(header, table), flush=True)
    print("iterations: outer alternating-power steps (tensor norm) / Lanczos matvecs (per output)")
    finish(board, "hessian_bench")


if __name__ == "__main__":
    main()
