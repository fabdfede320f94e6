"""How the proven beta bound and the estimate scale with width (issue 9, item 2).

``python -m bench.bound_width [--widths 256 512 ...] [--depths 2 3] [--lift-param-cap]``
certifies nothing: for NTK
tanh MLPs (16 inputs on the unit sphere, n = 8, one linear output) it computes the proven bound
of sup ||H_F|| on B(w0, 1) (:func:`plcore.estimate.analytic.beta_upper_bound`) and the power-method
estimate of ||H_F(w0)|| (a lower estimate), fits log-log slopes against width, and prints a
markdown table (copied into docs/theory.md, section 16). ``--lift-param-cap`` lifts the JSON
spec's 50M-parameter cap (a service safety limit) for this run, for widths 8192 (depth 2: 67M
parameters) and 16384 (268M; about 2 GiB per float64 copy of w).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from plcore import load_model
from plcore.estimate.analytic import beta_upper_bound
from plcore.hessian.tensor_norm import hessian_tensor_norm


def _spec(width: int, depth: int) -> dict[str, object]:
    return {
        "type": "mlp",
        "input_dim": 16,
        "widths": [width] * depth,
        "output_dim": 1,
        "activation": "tanh",
        "parameterization": "ntk",
        "weight_std": 1.0,
        "bias_std": 0.1,
        "seed": 0,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--lift-param-cap", action="store_true")
    ap.add_argument(
        "--estimate-max-params",
        type=int,
        default=50_000_000,
        help="no power-method estimate above this many parameters (its Lanczos run needs about "
        "190 bytes per parameter: 12.6 GB at 67M)",
    )
    ap.add_argument(
        "--bound-max-params", type=int, default=300_000_000, help="skip larger models entirely"
    )
    args = ap.parse_args(argv)
    if args.lift_param_cap:
        import plcore.models.spec_schema as schema

        schema.MAX_PARAMS = 10**12  # type: ignore[misc]
    g = torch.Generator().manual_seed(0)
    X = torch.randn(8, 16, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    print("| depth | width | params | proven bound | estimate | ratio | bound time (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    slopes = []
    for depth in args.depths:
        bounds: list[tuple[int, float]] = []
        ests: list[tuple[int, float]] = []
        for width in args.widths:
            if _n_params(width, depth) > args.bound_max_params:
                continue
            model = load_model(_spec(width, depth))
            t = time.perf_counter()
            b = beta_upper_bound(model, X, 1.0)
            dt = time.perf_counter() - t
            assert b is not None
            bounds.append((width, b.beta_upper))
            est_text, ratio = "-", "-"
            if model.n_params <= args.estimate_max_params:
                est = float(
                    hessian_tensor_norm(
                        model, X, generator=torch.Generator().manual_seed(0), restarts=1, max_iter=8
                    ).value
                )
                ests.append((width, est))
                est_text, ratio = f"{est:.4g}", f"{b.beta_upper / est:.3g}"
            print(
                f"| {depth} | {width} | {model.n_params:,} | {b.beta_upper:.4g} | {est_text} | "
                f"{ratio} | {dt:.2f} |",
                flush=True,
            )
            del model
        slopes.append((depth, _slope(bounds), _slope(ests)))
    print()
    print("| depth | slope of the proven bound (widths) | slope of the estimate (widths) |")
    print("|---:|---:|---:|")
    for depth, sb, se in slopes:
        print(f"| {depth} | {sb} | {se} |")


def _n_params(width: int, depth: int) -> int:
    dims = [16] + [width] * depth + [1]
    return sum(a * b + b for a, b in itertools.pairwise(dims))


def _slope(points: list[tuple[int, float]]) -> str:
    """Log-log least-squares slope and the width range it covers."""
    if len(points) < 2:
        return "-"
    w, v = zip(*points, strict=True)
    fit = np.polyfit(np.log(w), np.log(v), 1)[0]
    return f"{fit:.3f} ({min(w)}..{max(w)})"


if __name__ == "__main__":
    main()
