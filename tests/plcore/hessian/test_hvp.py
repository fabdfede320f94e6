from __future__ import annotations

import pytest
import torch

from plcore.errors import NumericalError, ShapeMismatchError
from plcore.hessian.dense import dense_output_hessians
from plcore.hessian.hvp import output_hvp, second_directional
from tests.plcore.hessian.nets import tiny_data, tiny_mlp


@pytest.fixture
def problem() -> tuple:
    model = tiny_mlp([3, 5, 4, 2], "tanh", seed=0)
    data = tiny_data(3, 3, 2)
    g = torch.Generator().manual_seed(5)
    w = model.flat_params() + 0.1 * torch.randn(model.n_params, generator=g)
    return model, data.X, w, g


def test_output_hvp_equals_dense_contraction(problem: tuple) -> None:
    model, X, w, g = problem
    H = dense_output_hessians(model, X, params=w)
    a = torch.randn(H.shape[0], generator=g)
    u = torch.randn(model.n_params, generator=g)
    expected = torch.einsum("i,ijk,k->j", a, H, u)
    torch.testing.assert_close(
        output_hvp(model, X, a, u, params=w), expected, rtol=1e-10, atol=1e-12
    )


def test_second_directional_equals_dense_quadratic_forms(problem: tuple) -> None:
    model, X, w, g = problem
    H = dense_output_hessians(model, X, params=w)
    u = torch.randn(model.n_params, generator=g)
    expected = torch.einsum("j,ijk,k->i", u, H, u)
    torch.testing.assert_close(
        second_directional(model, X, u, params=w), expected, rtol=1e-10, atol=1e-12
    )


def test_second_directional_matches_finite_differences(problem: tuple) -> None:
    model, X, w, g = problem
    u = torch.randn(model.n_params, generator=g)
    h = 1e-4
    F = lambda v: model.apply_flat(v, X).detach()  # noqa: E731
    fd = (F(w + h * u) - 2 * F(w) + F(w - h * u)) / h**2
    torch.testing.assert_close(second_directional(model, X, u, params=w), fd, rtol=1e-5, atol=1e-6)


def test_hessian_of_a_linear_model_is_zero() -> None:
    model = tiny_mlp([3, 2], seed=0)  # a single Dense layer: F is affine in w
    X = tiny_data(2, 3, 2).X
    u = torch.ones(model.n_params)
    assert torch.equal(second_directional(model, X, u), torch.zeros(4))
    assert torch.equal(output_hvp(model, X, torch.ones(4), u), torch.zeros(model.n_params))


def test_wrong_shapes_are_rejected_with_sizes(problem: tuple) -> None:
    model, X, _, _ = problem
    m = model.n_params
    with pytest.raises(ShapeMismatchError, match=r"a must be a vector of length N=6"):
        output_hvp(model, X, torch.ones(5), torch.ones(m))
    with pytest.raises(ShapeMismatchError, match=rf"u must be a vector of length m={m}"):
        second_directional(model, X, torch.ones(m + 1))
    with pytest.raises(ShapeMismatchError, match=rf"length m={m}, got shape \(3,\)"):
        second_directional(model, X, torch.ones(m), params=torch.ones(3))


def test_non_finite_params_are_rejected(problem: tuple) -> None:
    model, X, w, _ = problem
    w = w.clone()
    w[0] = float("nan")
    with pytest.raises(NumericalError, match="1 non-finite"):
        second_directional(model, X, torch.ones(model.n_params), params=w)


def test_warm_up_runs_both_second_order_passes_in_a_fresh_process() -> None:
    """warm_up() imports what the first forward-mode and double-backward passes need, so a
    worker's first job does not pay it (checked in a clean interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "from plcore.hessian.hvp import warm_up\n"
        "warm_up()\n"
        "assert 'torch._dynamo' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
