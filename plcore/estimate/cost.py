"""What a certification run will cost, from the problem's sizes, before it runs (dry run).

Pure: sizes and a budget in, an estimate out (:func:`estimate_cost`); :func:`problem_size` reads
the sizes off a model with one forward pass on one zero sample.

Memory (float64, 8 bytes a number; N = n k outputs, m parameters, A activations per sample):

* the process itself (interpreter, torch, plcore): ``CostModel.baseline_bytes``;
* data 8 n (d + k); parameter-sized vectors (w0, iterates, gradients, probe points, power
  method and Lanczos work vectors, autograd buffers): 96 * 8 m, a count fitted to the measured
  peak resident size (``bench/estimate_bench.py``);
* the tangent kernel K (N x N) with the temporaries of its assembly (the per-layer Gram
  products) and of ``eigvalsh`` (a copy and its workspace): 5 * 8 N^2 (measured: 4.4 at
  N = 4000); when N > m (under-parameterized) the m x m Gram J^T J replaces it, 5 * 8 m^2, with
  one chunk of Jacobian rows (at most 256 MiB);
* the kernel's intermediates: structured method, every layer's inputs and output derivatives
  for all samples, 8 n A (1 + k); reference method, two chunks of Jacobian rows, at most
  2 * 8 N m and at most 256 MiB (``plcore.kernel._blocks.DEFAULT_CHUNK_BYTES``) per chunk;
* Hessian-vector products on all samples keep the forward and first backward graphs,
  about 6 * 8 n A, and Lanczos keeps its basis, 8 (krylov_dim + 1) m.

The peak is the baseline, data and vectors plus the larger of the kernel stage and the Hessian
stage. Time: every stage is counted in passes (forward, gradient, Hessian-vector product: about
1, 3 and 5 forward flops, ``2 MACs`` a weight use) and dense matrix work (Gram products
2 N^2 (A + d) or 2 N^2 m; ``eigvalsh`` about 4/3 N^3 flops, its tridiagonalisation); a pass
costs a fixed overhead per layer plus its flops at a calibrated rate (:data:`CALIBRATED`).
The iteration counts of the iterative solvers (power method, Lanczos, radius search) depend on
the problem: ``time_s`` uses typical counts, ``time_upper_s`` every iteration the budget
allows. The constants were fitted on the 2-core development machine
(``bench/estimate_bench.py`` measures the accuracy and refits them); see
``CostEstimate.accuracy``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from plcore.certificate.budget import Budget

F64 = 8
"""Bytes of one float64."""
CHUNK_BYTES = 256 * 2**20
"""The reference kernel's budget for one chunk of Jacobian rows (plcore.kernel._blocks)."""
TYPICAL_OUTER_ITERATIONS = 5
"""Outer iterations a Hessian power method typically needs (observed 3 to 15)."""
PROBE_TYPICAL_OUTER_ITERATIONS = 2
"""The same for a probe's loose Hessian norm (observed about 2 krylov_dim products a point)."""
KERNEL_MATRICES = 5
"""N x N float64 matrices alive while the kernel is assembled and its eigenvalues computed."""
PARAMETER_VECTORS = 96
"""Parameter-sized float64 vectors alive at the peak (fitted to measured resident sizes)."""
HESSIAN_PROBE_MAX_ITER = 50
"""Outer iterations a probe's Hessian norm may take (plcore.estimate.probes)."""


@dataclass(frozen=True)
class ProblemSize:
    """The sizes that drive the cost of a certification.

    Attributes:
        n_samples: n.
        n_outputs: k, outputs per sample (N = n k).
        n_params: m, trainable parameters.
        input_numel: d, numbers in one input sample.
        activations: A, numbers in the outputs of all layers for one sample.
        macs_per_sample: multiply-adds of one forward pass on one sample (at least m).
        layers: leaf modules of the network (each costs a fixed overhead per pass).
        structured_kernel: the structured kernel method runs (else the reference one).
        width_sweep: the width extrapolation runs (an MLP spec within the budget's limit).
    """

    n_samples: int
    n_outputs: int
    n_params: int
    input_numel: int
    activations: int
    macs_per_sample: int
    layers: int
    structured_kernel: bool = True
    width_sweep: bool = False

    @property
    def N(self) -> int:
        """n k, the number of constraints."""
        return self.n_samples * self.n_outputs


@dataclass(frozen=True)
class CostModel:
    """Machine constants of the time and memory model.

    Attributes:
        seconds_per_layer_pass: fixed cost of one layer in one pass (Python, autograd, launch).
        flops_per_second: rate of the passes' arithmetic (small matrix products, float64).
        blas_flops_per_second: rate of the dense N x N work (Gram products, eigvalsh).
        baseline_bytes: resident memory of a worker process before a job (torch loaded).
        machine: where the constants were measured.
        startup_s: first-call costs of a run (torch.func and autograd warm-up, lazy imports).
    """

    seconds_per_layer_pass: float
    flops_per_second: float
    blas_flops_per_second: float
    baseline_bytes: int
    machine: str
    startup_s: float = 0.0


CALIBRATED = CostModel(
    seconds_per_layer_pass=2.0e-5,
    flops_per_second=4.0e9,
    blas_flops_per_second=1.6e10,
    baseline_bytes=415 * 2**20,
    machine="2-core x86-64 development machine, torch 2.13 CPU build, 1 thread per job",
    startup_s=1.0,
)
"""Fitted by ``python -m bench.estimate_bench --fit`` to the CPU seconds and peak resident sizes
of six NTK tanh MLP runs (65 to 68k parameters, n = 8 to 32, budgets fast and standard) and an
under-parameterized run (N = 4000 > m: the parameter Gram J^T J replaces K), refitted
2026-11-30 after the issue-8 speed-ups (worst time ratio over the fitted cases 1.81x; before the
refit the estimates were 3 to 11 times the measured CPU time)."""


@dataclass(frozen=True)
class StageCost:
    """One stage: typical and worst-case seconds, and the memory it needs above the baseline."""

    name: str
    seconds: float
    seconds_upper: float
    memory_bytes: int


@dataclass(frozen=True)
class CostEstimate:
    """The estimate of a run's wall time and peak memory.

    Attributes:
        time_s: typical wall time (typical solver iteration counts).
        time_upper_s: wall time if every solver runs to the budget's iteration limits.
        peak_memory_bytes: estimated peak resident memory of the worker process.
        memory: the terms of the peak, bytes each (see the module docstring).
        stages: per-stage times and memory.
        size: the sizes the estimate was made from.
        budget: the budget preset.
        accuracy: how far measured runs were from the estimate when it was calibrated.
    """

    time_s: float
    time_upper_s: float
    peak_memory_bytes: int
    memory: dict[str, int]
    stages: tuple[StageCost, ...]
    size: ProblemSize
    budget: str
    accuracy: str = field(
        default="calibrated on one 2-core CPU machine, one thread per job, tanh MLPs of 65 to "
        "68k parameters, n = 8 to 6000: the CPU time of 11 measured runs was 0.63x to 2.2x "
        "of time_s (4 of them held out of the fit; measured while a test run shared the "
        "machine); the peak resident size 0.85x to 0.93x of peak_memory_bytes. Other "
        "machines, GPUs, other layer types and the inner loops of "
        "a newer numerical core differ: refit with bench/estimate_bench.py"
    )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (sizes, stages and the memory terms included)."""
        out = asdict(self)
        out["stages"] = [asdict(s) for s in self.stages]
        out["size"]["N"] = self.size.N
        return out


def problem_size(
    module: nn.Module,
    input_shape: tuple[int, ...],
    *,
    n_samples: int,
    n_outputs: int,
    n_params: int,
    structured_kernel: bool = True,
    width_sweep: bool = False,
) -> ProblemSize:
    """Read A, the MACs and the layer count off ``module`` with one forward pass on one zero
    sample of ``input_shape`` (float64, no gradients).

    MACs: for every leaf module with a ``weight``, weight.numel() times the positions it is
    applied at (the layer's output numbers over weight.shape[0]: 1 for a dense layer, H W for
    a convolution); at least ``n_params``.
    """
    outputs: dict[nn.Module, int] = {}
    hooks = []
    for mod in module.modules():
        if next(iter(mod.children()), None) is None:

            def hook(m: nn.Module, _args: Any, out: Any) -> None:
                if isinstance(out, torch.Tensor):
                    outputs[m] = outputs.get(m, 0) + out.numel()

            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(torch.zeros((1, *input_shape), dtype=torch.float64))
    finally:
        for h in hooks:
            h.remove()
    macs = 0
    for mod, numel in outputs.items():
        weight = getattr(mod, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim >= 1 and weight.shape[0] > 0:
            macs += weight.numel() * max(1, numel // int(weight.shape[0]))
    return ProblemSize(
        n_samples=n_samples,
        n_outputs=n_outputs,
        n_params=n_params,
        input_numel=math.prod(input_shape),
        activations=sum(outputs.values()),
        macs_per_sample=max(macs, n_params),
        layers=max(len(outputs), 1),
        structured_kernel=structured_kernel,
        width_sweep=width_sweep,
    )


class _Clock:
    """Seconds of passes and dense work for one problem size under one cost model."""

    def __init__(self, s: ProblemSize, cm: CostModel, scale: float = 1.0) -> None:
        self.s, self.cm = s, cm
        self.fwd_flops = 2.0 * s.n_samples * s.macs_per_sample * scale

    def passes(self, count: float, flops_factor: float) -> float:
        """``count`` passes each of ``flops_factor`` forward passes' arithmetic."""
        per = self.cm.seconds_per_layer_pass * self.s.layers * flops_factor
        return count * (per + flops_factor * self.fwd_flops / self.cm.flops_per_second)

    def hvp(self, count: float) -> float:
        return self.passes(count, 5.0)

    def grad(self, count: float) -> float:
        return self.passes(count, 3.0)

    def dense(self, flops: float) -> float:
        return flops / self.cm.blas_flops_per_second

    def kernel(self, count: float = 1.0) -> float:
        """K = J J^T and its eigenvalues; for N > m the m x m Gram J^T J from Jacobian rows
        (k backward passes a sample, 2 N m^2 flops) and its eigenvalues instead."""
        s, N = self.s, float(self.s.N)
        if s.n_params < s.N:
            m = float(s.n_params)
            rows = self.passes(1 + s.n_outputs, 3.0)
            return count * (rows + self.dense(2.0 * N * m**2) + self.dense(4.0 / 3.0 * m**3))
        eig = self.dense(4.0 / 3.0 * N**3)
        # structured: Gram products of layer inputs and output derivatives; reference: of
        # Jacobian rows. Both need one forward and k backward passes.
        gram = (s.activations + s.input_numel) if s.structured_kernel else s.n_params
        work = self.passes(1 + s.n_outputs, 3.0) + self.dense(2.0 * N**2 * gram)
        return count * (work + eig)


def _hessian_hvps(s: ProblemSize, b: Budget, outer: float, lanczos_share: float) -> float:
    scanned = min(s.N, b.output_hessian_scan)
    return scanned * b.krylov_dim * lanczos_share + b.power_restarts * b.krylov_dim * outer


def memory_terms(s: ProblemSize, b: Budget, cm: CostModel = CALIBRATED) -> dict[str, int]:
    """The memory terms of the module docstring, in bytes."""
    N, n, m, k, A = s.N, s.n_samples, s.n_params, s.n_outputs, s.activations
    if s.structured_kernel:
        kernel_work = F64 * n * A * (1 + k)
    else:
        kernel_work = min(2 * F64 * N * m, 2 * max(CHUNK_BYTES, F64 * k * m))
    # N > m: K is never formed; G = J^T J (m x m) with the temporaries of its symmetrization
    # and of eigvalsh, and one chunk of Jacobian rows (plcore.kernel.parameter_gram)
    gram = KERNEL_MATRICES * F64 * N * N
    if m < N:
        gram, kernel_work = KERNEL_MATRICES * F64 * m * m, min(F64 * N * m, CHUNK_BYTES)
    return {
        "baseline": cm.baseline_bytes,
        "data": F64 * n * (s.input_numel + k),
        "parameter_vectors": PARAMETER_VECTORS * F64 * m,
        "kernel_matrices": gram,
        "kernel_intermediates": int(kernel_work),
        "hessian_graphs": 6 * F64 * n * A,
        "lanczos_basis": F64 * (b.krylov_dim + 1) * m,
    }


def estimate_cost(
    size: ProblemSize,
    budget: Budget,
    *,
    validation_steps: int | None = None,
    sgd: bool = False,
    cost_model: CostModel = CALIBRATED,
) -> CostEstimate:
    """Estimate wall time and peak memory of ``plcore.certify`` on a problem of ``size``.

    Stage counts follow :func:`plcore.certify` with budget ``budget``: the Hessian norm
    (Lanczos over min(N, scan) outputs and ``power_restarts`` power-method restarts), one
    probed ball of 1 + 3 n_sphere + pilot_steps + 2 n_adversarial (adversarial_steps + 1)
    points (each a kernel and a Hessian norm; up to ``radius_grid`` balls in the worst case),
    the checking run (``validation_steps`` gradient steps; up to ``path_checks`` kernel and
    Hessian checks), and the width sweep at the budget's smaller widths.
    """
    s, b, cm = size, budget, cost_model
    c = _Clock(s, cm)
    steps = b.validation_steps if validation_steps is None else validation_steps
    typical, worst = TYPICAL_OUTER_ITERATIONS, b.hessian_max_iter
    points = 1 + 3 * b.n_sphere + b.pilot_steps + 2 * b.n_adversarial * (b.adversarial_steps + 1)
    ascent = 2 * b.n_adversarial * b.adversarial_steps
    probe_outer = PROBE_TYPICAL_OUTER_ITERATIONS
    probe_typ = c.kernel(points) + c.hvp(points * b.krylov_dim * probe_outer) + c.grad(ascent)
    probe_max = (
        c.kernel(points) + c.hvp(points * b.krylov_dim * HESSIAN_PROBE_MAX_ITER) + c.grad(ascent)
    )
    path_check = c.kernel() + c.hvp(b.krylov_dim * worst)
    width_typ = width_max = 0.0
    if s.width_sweep:
        for f in b.width_fractions:
            if f < 1.0:
                cw = _Clock(s, cm, scale=f)
                width_typ += cw.kernel() + cw.hvp(b.power_restarts * b.krylov_dim * typical)
                width_max += cw.kernel() + cw.hvp(b.power_restarts * b.krylov_dim * worst)
    initial: tuple[str, float, float | None] = (
        "initial quantities",
        cm.startup_s + c.kernel() + c.passes(1, 1.0),
        None,
    )
    stages: tuple[tuple[str, float, float | None], ...] = (
        initial,
        (
            "hessian norm",
            c.hvp(_hessian_hvps(s, b, typical, 0.5)),
            c.hvp(_hessian_hvps(s, b, worst, 1.0)),
        ),
        ("radius search", c.grad(b.pilot_steps) + probe_typ, probe_max * b.radius_grid),
        ("sgd", c.kernel() if sgd else 0.0, None),
        ("checking run", c.grad(steps + 1), c.grad(steps + 1) + path_check * b.path_checks),
        ("width extrapolation", width_typ, width_max),
    )
    mem = memory_terms(s, b, cm)
    kernel_stage = mem["kernel_matrices"] + mem["kernel_intermediates"]
    hessian_stage = mem["hessian_graphs"] + mem["lanczos_basis"] + F64 * s.N * s.N
    stage_memory = {
        "initial quantities": kernel_stage,
        "hessian norm": hessian_stage,
        "radius search": max(kernel_stage, hessian_stage),
        "sgd": kernel_stage,
        "checking run": max(kernel_stage, hessian_stage),
        "width extrapolation": kernel_stage,
    }
    if s.n_params < s.N:
        stages = (initial,)  # under-parameterized: certify stops after the kernel
        hessian_stage = 0
    costs = tuple(
        StageCost(name, t, t if upper is None else max(t, upper), stage_memory[name])
        for name, t, upper in stages
    )
    fixed = mem["baseline"] + mem["data"] + mem["parameter_vectors"]
    return CostEstimate(
        time_s=sum(x.seconds for x in costs),
        time_upper_s=sum(x.seconds_upper for x in costs),
        peak_memory_bytes=int(fixed + max(kernel_stage, hessian_stage)),
        memory=mem,
        stages=costs,
        size=s,
        budget=b.name,
    )


def estimate_for(
    model: Any, data: Any, options: Any, cost_model: CostModel = CALIBRATED
) -> CostEstimate:
    """:func:`estimate_cost` for a loaded ``plcore`` model, dataset and ``CertifyOptions``."""
    from plcore.certificate.budget import get_budget
    from plcore.kernel.methods import KernelMethod, resolve_kernel_method

    budget = get_budget(options.budget)
    spec = getattr(model, "spec", None)
    size = problem_size(
        model.module,
        tuple(model.input_shape),
        n_samples=int(data.n_samples),
        n_outputs=int(model.output_dim),
        n_params=int(model.n_params),
        structured_kernel=resolve_kernel_method(model, options.kernel_method)
        is KernelMethod.STRUCTURED,
        width_sweep=bool(
            spec is not None
            and spec.get("type") == "mlp"
            and model.n_params <= budget.width_max_params
        ),
    )
    return estimate_cost(
        size,
        budget,
        validation_steps=options.validation_steps,
        sgd=bool(options.batch_sizes),
        cost_model=cost_model,
    )
