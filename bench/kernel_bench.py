"""Micro benchmark of the tangent-kernel methods: reference (J rows) vs structured (never J).

Run ``python -m bench.kernel_bench [--device cpu|cuda]``. Each (model, method) case runs in a
fresh process so that its peak memory is its own: peak resident set size above the process's
baseline on CPU, ``torch.cuda.max_memory_allocated`` on CUDA. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import time
from dataclasses import dataclass

import torch
from torch import nn

from plcore.kernel import tangent_kernel
from plcore.models.base import Model
from plcore.models.layers import Activation, Conv2d, Dense


@dataclass(frozen=True)
class Case:
    model: str
    method: str
    device: str


@dataclass(frozen=True)
class Row:
    model: str
    method: str
    N: int
    m: int
    seconds: float
    peak_mib: float
    rel_diff: float | None = None


def _dense(d_in: int, d_out: int, g: torch.Generator) -> Dense:
    return Dense(
        torch.randn(d_out, d_in, generator=g),
        torch.randn(d_out, generator=g),
        weight_scale=1.0 / math.sqrt(d_in),
        bias_scale=0.1,
    )


def build(name: str, device: str) -> tuple[Model, torch.Tensor]:
    """The benchmark problems: an MLP (n = 64, d = 16, width 1024, depth 2) and a small CNN."""
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(0)
    if name == "mlp":
        module: nn.Module = nn.Sequential(
            _dense(16, 1024, g),
            Activation("tanh"),
            _dense(1024, 1024, g),
            Activation("tanh"),
            _dense(1024, 1, g),
        )
        input_shape: tuple[int, ...] = (16,)
        n, k = 64, 1
    elif name == "cnn":
        module = nn.Sequential(
            Conv2d(
                torch.randn(16, 3, 3, 3, generator=g), None, padding=(1, 1), weight_scale=1 / 5.2
            ),
            Activation("tanh"),
            Conv2d(
                torch.randn(16, 16, 3, 3, generator=g), None, stride=(2, 2), weight_scale=1 / 12
            ),
            Activation("tanh"),
            nn.Flatten(),
            _dense(16 * 7 * 7, 10, g),
        )
        input_shape = (3, 16, 16)
        n, k = 32, 10
    else:
        raise ValueError(name)
    module = module.to(device).eval()
    model = Model(module, input_shape, k, "json", "0" * 64, description=name)
    X = torch.randn(n, *input_shape, generator=g).to(device)
    return model, X


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run(case: Case, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, X = build(case.model, case.device)
    base = _rss_mib()
    if case.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    K = tangent_kernel(model, X, case.method)
    if case.device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = _rss_mib() - base
    seconds = time.perf_counter() - start
    row = Row(case.model, case.method, K.shape[0], model.n_params, seconds, peak)
    queue.put((row, K.cpu().numpy()))


def run_case(case: Case) -> tuple[Row, torch.Tensor]:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(target=_run, args=(case, queue))
    proc.start()
    row, K = queue.get()
    proc.join()
    return row, torch.from_numpy(K)


def main(argv: list[str] | None = None) -> None:
    """Print a table: model, method, N, m, seconds, peak memory, difference to reference."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="*", default=["mlp", "cnn"])
    args = parser.parse_args(argv)
    print(f"tangent kernel benchmark on {args.device} (float64)")
    header = (
        f"{'model':<6} {'method':<11} {'N':>5} {'m':>9} {'seconds':>9} {'peak MiB':>9} "
        f"{'rel diff':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in args.models:
        ref: torch.Tensor | None = None
        for method in ("reference", "structured"):
            row, K = run_case(Case(name, method, args.device))
            diff = (
                ""
                if ref is None
                else f"{float(torch.linalg.norm(K - ref) / torch.linalg.norm(ref)):.1e}"
            )
            ref = K if ref is None else ref
            print(
                f"{row.model:<6} {row.method:<11} {row.N:>5} {row.m:>9} {row.seconds:>9.3f} "
                f"{row.peak_mib:>9.1f} {diff:>9}"
            )


if __name__ == "__main__":
    main()
