"""plcore.estimate.cost: the dry-run estimate's sizes and terms against closed forms."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from plcore import CertifyOptions, load_dataset, load_model
from plcore.certificate.budget import get_budget
from plcore.estimate.cost import (
    CALIBRATED,
    F64,
    KERNEL_MATRICES,
    ProblemSize,
    estimate_cost,
    estimate_for,
    memory_terms,
    problem_size,
)


def _mlp(d: int, widths: list[int], k: int) -> object:
    return load_model(
        {"type": "mlp", "input_dim": d, "widths": widths, "output_dim": k, "activation": "tanh"}
    )


def _size(n: int = 16, m: int = 5000, **kw: object) -> ProblemSize:
    values: dict[str, object] = {
        "n_samples": n,
        "n_outputs": 1,
        "n_params": m,
        "input_numel": 8,
        "activations": 200,
        "macs_per_sample": m,
        "layers": 5,
    }
    values.update(kw)
    return ProblemSize(**values)  # type: ignore[arg-type]


def test_problem_size_of_an_mlp_matches_its_closed_form() -> None:
    d, widths, k = 5, [7, 11], 3
    model = _mlp(d, widths, k)
    s = problem_size(
        model.module, model.input_shape, n_samples=4, n_outputs=k, n_params=model.n_params
    )
    dims = [d, *widths, k]
    macs = sum(a * b for a, b in itertools.pairwise(dims))
    assert model.n_params == macs + sum(dims[1:])  # weights + biases
    assert s.macs_per_sample == max(macs, model.n_params)  # at least one use of each parameter
    # dense, tanh, dense, tanh, dense: each hidden width twice, then the k outputs
    assert s.layers == 2 * len(widths) + 1
    assert s.activations == 2 * sum(widths) + k
    assert s.n_samples * k == s.N and s.input_numel == d


def test_problem_size_of_a_convolution_counts_its_positions() -> None:
    conv = torch.nn.Conv2d(2, 4, kernel_size=3, padding=1, dtype=torch.float64)
    s = problem_size(conv, (2, 6, 6), n_samples=1, n_outputs=4 * 36, n_params=2 * 4 * 9 + 4)
    assert s.macs_per_sample == conv.weight.numel() * 36
    assert s.activations == 4 * 36


def test_memory_terms_are_the_documented_formulas() -> None:
    b = get_budget("standard")
    s = _size(n=100, m=10_000, n_outputs=2)
    mem = memory_terms(s, b)
    N = 200
    assert mem["kernel_matrices"] == KERNEL_MATRICES * F64 * N * N
    assert mem["lanczos_basis"] == F64 * (b.krylov_dim + 1) * 10_000
    assert mem["kernel_intermediates"] == F64 * 100 * 200 * (1 + 2)
    assert mem["data"] == F64 * 100 * (8 + 2)
    assert mem["baseline"] == CALIBRATED.baseline_bytes


def test_reference_kernel_intermediates_are_capped_by_the_chunk_budget() -> None:
    b = get_budget("fast")
    small = memory_terms(_size(n=4, m=1000, structured_kernel=False), b)
    assert small["kernel_intermediates"] == 2 * F64 * 4 * 1000
    big = memory_terms(_size(n=10_000, m=1_000_000, structured_kernel=False), b)
    assert big["kernel_intermediates"] == 2 * 256 * 2**20


def test_peak_memory_is_fixed_terms_plus_the_larger_stage() -> None:
    b = get_budget("fast")
    s = _size(n=2000, m=50_000)
    est = estimate_cost(s, b)
    mem = est.memory
    kernel_stage = mem["kernel_matrices"] + mem["kernel_intermediates"]
    hessian_stage = mem["hessian_graphs"] + mem["lanczos_basis"] + F64 * s.N**2
    fixed = mem["baseline"] + mem["data"] + mem["parameter_vectors"]
    assert est.peak_memory_bytes == fixed + max(kernel_stage, hessian_stage)


def test_kernel_memory_grows_as_n_squared() -> None:
    b = get_budget("fast")
    m1 = estimate_cost(_size(n=4000, m=10**6), b).memory["kernel_matrices"]
    m2 = estimate_cost(_size(n=8000, m=10**6), b).memory["kernel_matrices"]
    assert m2 == 4 * m1


def test_time_grows_with_samples_parameters_and_budget() -> None:
    fast, standard = get_budget("fast"), get_budget("standard")
    base = estimate_cost(_size(n=16, m=5000), fast)
    assert estimate_cost(_size(n=64, m=5000), fast).time_s > base.time_s
    assert estimate_cost(_size(n=16, m=50_000, macs_per_sample=50_000), fast).time_s > base.time_s
    assert estimate_cost(_size(n=16, m=5000), standard).time_s > base.time_s
    assert base.time_s <= base.time_upper_s
    assert math.isclose(base.time_s, sum(s.seconds for s in base.stages))


def test_validation_steps_add_gradient_passes_at_the_modelled_rate() -> None:
    b = get_budget("fast")
    s = _size()
    extra = 1000
    t0 = estimate_cost(s, b, validation_steps=0).time_s
    t1 = estimate_cost(s, b, validation_steps=extra).time_s
    cm = CALIBRATED
    per_step = 3.0 * (
        cm.seconds_per_layer_pass * s.layers
        + 2.0 * s.n_samples * s.macs_per_sample / cm.flops_per_second
    )
    assert t1 - t0 == pytest.approx(extra * per_step, rel=1e-9)


def test_under_parameterized_problem_is_estimated_to_stop_after_the_kernel() -> None:
    est = estimate_cost(_size(n=100, m=50), get_budget("standard"))
    assert [s.name for s in est.stages] == ["initial quantities"]


def test_a_slower_machine_model_scales_the_time() -> None:
    b = get_budget("fast")
    slow = dataclasses.replace(
        CALIBRATED,
        seconds_per_layer_pass=2 * CALIBRATED.seconds_per_layer_pass,
        flops_per_second=CALIBRATED.flops_per_second / 2,
        blas_flops_per_second=CALIBRATED.blas_flops_per_second / 2,
        startup_s=2 * CALIBRATED.startup_s,
    )
    s = _size()
    assert estimate_cost(s, b, cost_model=slow).time_s == pytest.approx(
        2 * estimate_cost(s, b).time_s
    )


def test_estimate_for_reads_sizes_and_options_off_the_loaded_problem() -> None:
    model = _mlp(64, [16], 1)
    data = load_dataset("sklearn:digits?n=12&target=label")
    est = estimate_for(model, data, CertifyOptions(budget="fast", batch_sizes=[4]))
    assert est.budget == "fast"
    assert est.size.n_samples == 12 and est.size.n_params == model.n_params
    assert est.size.structured_kernel and est.size.width_sweep
    assert {s.name for s in est.stages} >= {"sgd", "width extrapolation"}
    assert next(s for s in est.stages if s.name == "sgd").seconds > 0
    as_dict = est.as_dict()
    assert as_dict["size"]["N"] == 12 and as_dict["stages"][0]["name"] == "initial quantities"
