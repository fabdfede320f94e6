"""How the proven beta bound and the estimate scale with width (issue 9, item 2).

``python -m bench.bound_width [--widths 256 512 ...] [--depths 2 3]`` certifies nothing: for NTK
tanh MLPs (16 inputs on the unit sphere, n = 8, one linear output) it computes the proven bound
of sup ||H_F|| on B(w0, 1) (:func:`plcore.estimate.analytic.beta_upper_bound`) and the power-method
estimate of ||H_F(w0)|| (a lower estimate), fits log-log slopes against width, and prints a
markdown table (copied into docs/rigorous.md).
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(8, 16, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    print("| depth | width | params | proven bound | estimate | ratio | bound time (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    slopes = []
    for depth in args.depths:
        bounds, ests = [], []
        for width in args.widths:
            model = load_model(_spec(width, depth))
            t = time.perf_counter()
            b = beta_upper_bound(model, X, 1.0)
            dt = time.perf_counter() - t
            assert b is not None
            est = hessian_tensor_norm(
                model, X, generator=torch.Generator().manual_seed(0), restarts=1, max_iter=8
            ).value
            bounds.append(b.beta_upper)
            ests.append(float(est))
            print(
                f"| {depth} | {width} | {model.n_params:,} | {b.beta_upper:.4g} | {est:.4g} | "
                f"{b.beta_upper / est:.3g} | {dt:.2f} |",
                flush=True,
            )
        lw = np.log(args.widths)
        slopes.append(
            (depth, np.polyfit(lw, np.log(bounds), 1)[0], np.polyfit(lw, np.log(ests), 1)[0])
        )
    print()
    print("| depth | slope of the proven bound | slope of the estimate |")
    print("|---:|---:|---:|")
    for depth, sb, se in slopes:
        print(f"| {depth} | {sb:.3f} | {se:.3f} |")


if __name__ == "__main__":
    main()
