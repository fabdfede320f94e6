"""Matrix-free products J u, J^T a, K v and dense J against autograd and finite differences."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from plcore.errors import ShapeMismatchError
from plcore.kernel import jacobian, jvp, kernel_matvec, outputs, vjp
from plcore.models.base import Model
from tests.plcore.kernel.test_reference import perturbed
from tests.plcore.kernel.toy_models import cnn, inputs, mlp, rel_err, token_model


def _autograd_jacobian(model: Model, X: Tensor, w: Tensor) -> Tensor:
    J: Tensor = torch.autograd.functional.jacobian(lambda v: model.apply_flat(v, X), w)
    return J


@pytest.fixture(params=["mlp", "cnn", "tokens"])
def problem(request: pytest.FixtureRequest) -> tuple[Model, Tensor, Tensor]:
    model = {"mlp": lambda: mlp(3, [5, 4], 2), "cnn": cnn, "tokens": token_model}[request.param]()
    return model, inputs(model, 4), perturbed(model)


def test_outputs_match_the_module_at_w0_and_apply_at_other_params(
    problem: tuple[Model, Tensor, Tensor],
) -> None:
    model, X, w = problem
    with torch.no_grad():
        expected0 = model.module(X).reshape(-1)
        expected = model.apply(model.unflatten(w), X).reshape(-1)
    assert torch.equal(outputs(model, X), expected0)
    assert torch.equal(outputs(model, X, params=w), expected)


def test_jacobian_equals_autograd_jacobian(problem: tuple[Model, Tensor, Tensor]) -> None:
    model, X, w = problem
    J = jacobian(model, X, params=w)
    assert J.shape == (X.shape[0] * model.output_dim, model.n_params)
    assert rel_err(J, _autograd_jacobian(model, X, w)) <= 1e-13


def test_jvp_matches_jacobian_and_central_differences(
    problem: tuple[Model, Tensor, Tensor],
) -> None:
    model, X, w = problem
    u = torch.randn(model.n_params, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    Ju = jvp(model, X, u, params=w)
    assert rel_err(Ju, _autograd_jacobian(model, X, w) @ u) <= 1e-12
    h = 1e-5
    fd = (outputs(model, X, params=w + h * u) - outputs(model, X, params=w - h * u)) / (2 * h)
    assert rel_err(Ju, fd) <= 1e-7


def test_vjp_and_kernel_matvec_match_dense_products(
    problem: tuple[Model, Tensor, Tensor],
) -> None:
    model, X, w = problem
    N = X.shape[0] * model.output_dim
    a = torch.randn(N, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    J = _autograd_jacobian(model, X, w)
    assert rel_err(vjp(model, X, a, params=w), J.T @ a) <= 1e-12
    assert rel_err(kernel_matvec(model, X, a, params=w), J @ (J.T @ a)) <= 1e-12


def test_products_default_to_the_models_own_parameters() -> None:
    model = mlp(3, [4], 1)
    X = inputs(model, 3)
    u = torch.ones(model.n_params, dtype=torch.float64)
    assert torch.equal(jvp(model, X, u), jvp(model, X, u, params=model.flat_params()))


def test_products_reject_vectors_of_the_wrong_length() -> None:
    model = mlp(3, [4], 2)
    X = inputs(model, 3)
    m = model.n_params
    with pytest.raises(ShapeMismatchError, match=rf"u has shape \({m - 1},\), expected \({m},\)"):
        jvp(model, X, torch.zeros(m - 1, dtype=torch.float64))
    with pytest.raises(ShapeMismatchError, match=r"a has shape \(3,\), expected \(6,\)"):
        vjp(model, X, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ShapeMismatchError, match=r"a has shape \(2, 3\), expected \(6,\)"):
        kernel_matvec(model, X, torch.zeros(2, 3, dtype=torch.float64))


def test_products_work_under_an_outer_no_grad() -> None:
    model = mlp(3, [4], 2)
    X = inputs(model, 3)
    v = torch.ones(6, dtype=torch.float64)
    expected = kernel_matvec(model, X, v)
    with torch.no_grad():
        assert torch.equal(kernel_matvec(model, X, v), expected)
        assert torch.equal(jacobian(model, X), jacobian(model, X))
