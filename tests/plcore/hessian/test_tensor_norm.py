from __future__ import annotations

import pytest
import torch

from plcore.errors import OptionsError
from plcore.hessian.dense import brute_force_tensor_norm, dense_output_hessians
from plcore.hessian.hvp import second_directional
from plcore.hessian.tensor_norm import hessian_tensor_norm, max_output_hessian_norm
from tests.plcore.hessian.nets import NETS, tiny_data, tiny_mlp, tiny_problem

_problem = tiny_problem


@pytest.mark.parametrize(("widths", "act", "n"), [NETS[0], NETS[2]])
def test_different_seeds_agree(widths: list[int], act: str, n: int) -> None:
    model, X = _problem(widths, act, n)
    values = [
        hessian_tensor_norm(model, X, generator=torch.Generator().manual_seed(s), restarts=3).value
        for s in (10, 11)
    ]
    assert max(values) - min(values) <= 1e-6 * max(values)


def test_value_is_a_lower_bound_of_every_sampled_quadratic_form() -> None:
    model, X = _problem([3, 6, 2], "tanh", 2)
    res = hessian_tensor_norm(model, X, generator=torch.Generator().manual_seed(0), restarts=2)
    g = torch.Generator().manual_seed(7)
    for _ in range(20):
        u = torch.randn(model.n_params, generator=g)
        u = u / u.norm()
        assert float(second_directional(model, X, u).norm()) <= res.value * (1 + 1e-12)


def test_spread_reports_disagreeing_restarts() -> None:
    model, X = _problem([3, 6, 2], "tanh", 2)
    res = hessian_tensor_norm(
        model, X, generator=torch.Generator().manual_seed(0), restarts=5, tol=1e-6
    )
    assert res.restarts == 5 and len(res.values) == 5
    expected = (max(res.values) - min(res.values)) / max(res.values)
    assert res.spread == pytest.approx(expected)
    assert res.value == max(res.values)


def test_non_convergence_is_reported_when_iterations_run_out() -> None:
    model, X = _problem([3, 5, 4, 2], "sigmoid", 2)
    res = hessian_tensor_norm(
        model, X, generator=torch.Generator().manual_seed(0), restarts=1, max_iter=1, tol=1e-14
    )
    assert not res.converged and res.iterations == 1


def test_linear_model_has_zero_hessian_norm() -> None:
    model = tiny_mlp([3, 2], seed=0)
    res = hessian_tensor_norm(model, tiny_data(2, 3, 2).X, generator=torch.Generator())
    assert res.value == 0.0 and res.converged


def test_invalid_options_are_rejected() -> None:
    model, X = _problem([3, 6, 2], "tanh", 2)
    with pytest.raises(OptionsError, match="restarts=0"):
        hessian_tensor_norm(model, X, generator=torch.Generator(), restarts=0)
    with pytest.raises(OptionsError, match="got 0, 4"):
        max_output_hessian_norm(model, X, generator=torch.Generator(), scan_limit=0)


@pytest.mark.parametrize(("widths", "act", "n"), NETS)
def test_max_output_hessian_norm_equals_dense_eigenvalues(
    widths: list[int], act: str, n: int
) -> None:
    model, X = _problem(widths, act, n)
    H = dense_output_hessians(model, X)
    per_output = torch.linalg.eigvalsh(H).abs().amax(dim=1)
    res = max_output_hessian_norm(model, X, generator=torch.Generator().manual_seed(0))
    assert res.exhaustive and res.converged and res.scanned == H.shape[0]
    assert abs(res.value - float(per_output.max())) <= 1e-8 * float(per_output.max())
    assert res.index == int(per_output.argmax())


def test_max_output_hessian_norm_scans_a_subset_beyond_the_limit() -> None:
    model, X = _problem([2, 8, 1], "softplus", 5)
    H = dense_output_hessians(model, X)
    per_output = torch.linalg.eigvalsh(H).abs().amax(dim=1)
    res = max_output_hessian_norm(
        model, X, generator=torch.Generator().manual_seed(0), scan_limit=2, n_probe=8
    )
    assert not res.exhaustive and res.scanned == 2
    assert res.value == pytest.approx(float(per_output[res.index]), rel=1e-8)
    assert res.value <= float(per_output.max()) * (1 + 1e-8)


@pytest.mark.parametrize(("widths", "act", "n"), [NETS[0], NETS[2]])
def test_warm_start_from_the_top_output_hessian_dominates_max_output_norm(
    widths: list[int], act: str, n: int
) -> None:
    # ||H_F|| >= max_i ||Hess F_i|| (take a = e_i): a single start at that eigenvector keeps it.
    model, X = _problem(widths, act, n)
    mo = max_output_hessian_norm(model, X, generator=torch.Generator().manual_seed(0))
    assert mo.vector is not None and mo.vector.shape == (model.n_params,)
    res = hessian_tensor_norm(
        model, X, generator=torch.Generator().manual_seed(1), restarts=1, warm_starts=[mo.vector]
    )
    assert res.restarts == 2  # the deterministic J^T 1 start plus the warm start
    assert res.value >= mo.value * (1 - 1e-9)


def test_racing_starts_keeps_the_value_and_spends_fewer_products() -> None:
    model, X = _problem([3, 6, 2], "tanh", 2)
    H = dense_output_hessians(model, X)
    brute = brute_force_tensor_norm(H, generator=torch.Generator().manual_seed(0), n_starts=16)
    kw = dict(restarts=4, tol=1e-14, max_iter=12)
    raced = hessian_tensor_norm(model, X, generator=torch.Generator().manual_seed(2), **kw)  # type: ignore[arg-type]
    full = hessian_tensor_norm(
        model,
        X,
        generator=torch.Generator().manual_seed(2),
        race_iter=12,
        **kw,  # type: ignore[arg-type]
    )
    assert raced.matvecs < full.matvecs and len(raced.values) == 4
    assert raced.value == pytest.approx(brute.value, rel=1e-8)
    assert full.value == pytest.approx(brute.value, rel=1e-8)
    assert raced.value <= brute.value * (1 + 1e-9)
