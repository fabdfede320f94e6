"""Issue 9 at the issue's sizes: the rigorous path certificate for a 3-hidden-layer NTK tanh MLP of
width 1024 on 32 digits and for the digits CNN on 64 digits, as JSON specs and ONNX exports, with
the "standard" budget (``python -m bench.rigorous_bench [--only mlp-json ...] [--cnn-digits 8 16 32
64] [--ln-digits 16 32] [--lngelu-digits 16 32] [--proj-digits 8 16] [--inc-digits 8 16] [--steps N]
[--raw]``); the LayerNorm MLP (tanh or GELU), the CNN with a projection shortcut and the Inception
CNN of bench.rigorous on request. Pixels are standardized (bench.rigorous.digits); ``--raw`` uses
the raw values / 16 instead. ``--steps`` replaces the checking run's 1,000 steps (to see where a
case closes when "standard" is too short).

Prints one row per case: whether and where the certificate closed (tier), the proven beta and
ball, the kernel's conditioning and, when the run does not reach the threshold, the steps it
would need at its observed rate. ``make test`` runs smaller versions (the width-256 MLP on 16
digits, the CNNs on 8, the LayerNorm MLP on 16; tests/plcore/certificate/test_rigorous_path.py).
"""

from __future__ import annotations

import argparse
import time

from bench.rigorous import (
    cnn_cases,
    inception_cnn_cases,
    layernorm_mlp_cases,
    mlp_cases,
    projection_cnn_cases,
)
from plcore import CertifyOptions, certify


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", default=None, help="case names (mlp-json, cnn-onnx, ...)")
    ap.add_argument("--mlp-width", type=int, default=1024)
    ap.add_argument("--mlp-digits", type=int, default=32)
    ap.add_argument("--cnn-digits", type=int, nargs="+", default=[64])
    ap.add_argument("--ln-digits", type=int, nargs="*", default=[])
    ap.add_argument("--lngelu-digits", type=int, nargs="*", default=[])
    ap.add_argument("--proj-digits", type=int, nargs="*", default=[])
    ap.add_argument("--inc-digits", type=int, nargs="*", default=[])
    ap.add_argument("--steps", type=int, default=None, help="checking-run steps (default 1,000)")
    ap.add_argument("--raw", action="store_true", help="pixels / 16, not standardized")
    args = ap.parse_args(argv)
    std = not args.raw
    cases = [*mlp_cases(args.mlp_width, 3, args.mlp_digits, standardize=std)]
    for n in args.cnn_digits:
        cases += cnn_cases(n, standardize=std)
    for n in args.ln_digits:
        cases += layernorm_mlp_cases(n, standardize=std)
    for n in args.lngelu_digits:
        cases += layernorm_mlp_cases(n, standardize=std, activation="gelu")
    for n in args.proj_digits:
        cases += projection_cnn_cases(n, standardize=std)
    for n in args.inc_digits:
        cases += inception_cnn_cases(n, standardize=std)
    print(
        "| case | params | N | seconds | t* | tier | beta (ball) | lambda_min / lambda_max "
        "at w0 | loss at the end | steps needed |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|---:|---:|")
    for case in cases:
        if args.only and case.name not in args.only:
            continue
        t = time.perf_counter()
        options = CertifyOptions(budget="standard", validation_steps=args.steps)
        rep = certify(case.model, case.data, options)
        dt = time.perf_counter() - t
        p, q, v = rep.path, rep.initial, rep.validation
        ball = f"{p.beta:.3g} ({p.ball_radius:.3g})" if p.beta is not None else "-"
        print(
            f"| {case.name} | {case.model.n_params:,} | {rep.problem.n_constraints} | {dt:.0f} | "
            f"{p.certified_from_step if p.certified_from_step is not None else '-'} | "
            f"{p.tier or '-'} | {ball} | {q.lambda_min:.3g} / {q.lambda_max:.3g} | "
            f"{v.losses[-1] if v is not None and v.losses else float('nan'):.3g} | "
            f"{p.steps_needed_estimate if p.steps_needed_estimate is not None else '-'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
