"""How the proven beta bound and the estimate scale with width (issue 9, item 2).

``python -m bench.bound_width [--widths 256 512 ...] [--depths 2 3] [--lift-param-cap] [--terms]``
certifies nothing: for NTK tanh MLPs (16 inputs on the unit sphere, n = 8, one linear output) it
computes the proven bound of sup ||H_F|| on B(w0, 1)
(:func:`plcore.estimate.analytic.beta_upper_bound`) and the power-method estimate of ||H_F(w0)|| (a
lower estimate), fits log-log slopes against width, and prints a markdown table (copied into
docs/theory.md, section 16). ``--terms`` prints instead which part of the bound shrinks how: the
bound at rho = 1, its centre part (rho = 0) and the rest (the Lipschitz part), and max_i
|lambda_j[i]| sqrt(width) at the centre for every hidden activation j, next to sqrt(2 ln width) (the
scale of the largest of width Gaussian entries). ``--lift-param-cap`` lifts the JSON spec's
50M-parameter cap (a service safety limit) for this run, for widths 8192 (depth 2: 67M parameters)
and 16384 (268M; about 2 GiB per float64 copy of w; depth 3: 537M, 7.5 min and a 17.3 GB peak for
the bound on the 2-core, 24 GiB machine).
"""

from __future__ import annotations

import argparse
import itertools
import math
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
        "--bound-max-params",
        type=int,
        default=600_000_000,
        help="skip larger models entirely (the bound needs about 32 bytes per parameter)",
    )
    ap.add_argument("--terms", action="store_true", help="the centre / Lipschitz split instead")
    args = ap.parse_args(argv)
    if args.lift_param_cap:
        import plcore.models.spec_schema as schema

        schema.MAX_PARAMS = 10**12  # type: ignore[misc]
    g = torch.Generator().manual_seed(0)
    X = torch.randn(8, 16, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    if args.terms:
        _terms(X, args.depths, args.widths, args.bound_max_params)
        return
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


def _terms(X: torch.Tensor, depths: list[int], widths: list[int], max_params: int) -> None:
    print(
        "| depth | width | bound (rho = 1) | centre part | Lipschitz part "
        "| sup sqrt(m), per layer | sqrt(2 ln m) |"
    )
    print("|---:|---:|---:|---:|---:|---|---:|")
    for depth, width in itertools.product(depths, widths):
        if _n_params(width, depth) > max_params:
            continue
        model = load_model(_spec(width, depth))
        cache: dict[str, object] = {}
        full = beta_upper_bound(model, X, 1.0, norm_cache=cache)
        centre = beta_upper_bound(model, X, 0.0, norm_cache=cache)
        assert full is not None and centre is not None
        c = cache["centre"]
        sups = [
            float(c.aic[j].max()) * math.sqrt(width)  # type: ignore[attr-defined]
            for j, st in enumerate(c.graph.steps)  # type: ignore[attr-defined]
            if st.kind == "act"
        ]
        print(
            f"| {depth} | {width} | {full.beta_upper:.4g} | {centre.beta_upper:.4g} | "
            f"{full.beta_upper - centre.beta_upper:.4g} | "
            f"{' / '.join(f'{v:.2f}' for v in sups)} | {math.sqrt(2 * math.log(width)):.2f} |",
            flush=True,
        )
        del model, cache, c


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
