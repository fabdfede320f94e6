"""The reference kernel equals J J^T from a dense autograd Jacobian, chunked or not."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from plcore.errors import DatasetError, NumericalError, OptionsError, ShapeMismatchError
from plcore.kernel import DEFAULT_CHUNK_BYTES, tangent_kernel
from plcore.kernel._blocks import samples_per_chunk
from plcore.kernel.reference import reference_kernel
from plcore.models.base import Model
from tests.plcore.kernel.toy_models import (
    _model,
    cnn,
    dense_reference_kernel,
    inputs,
    mlp,
    rel_err,
    token_model,
    unsupported_model,
)

MODELS: dict[str, Callable[[], Model]] = {
    "mlp": lambda: mlp(3, [6, 5], 2),
    "cnn": lambda: cnn(),
    "tokens": lambda: token_model(),
    "nn.Linear": unsupported_model,
}


def perturbed(model: Model, scale: float = 0.1, seed: int = 7) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    w = model.flat_params()
    return w + scale * torch.randn(w.shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("at_w0", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 1, 2])
def test_reference_kernel_equals_dense_jacobian_gram(
    name: str, at_w0: bool, chunk_size: int | None
) -> None:
    model = MODELS[name]()
    X = inputs(model, 5)
    w = model.flat_params() if at_w0 else perturbed(model)
    K = reference_kernel(model, X, params=None if at_w0 else w, chunk_size=chunk_size)
    assert K.shape == (5 * model.output_dim,) * 2
    assert K.dtype == torch.float64
    assert rel_err(K, dense_reference_kernel(model, X, w)) <= 1e-12


def test_reference_kernel_is_exactly_symmetric_when_chunked() -> None:
    model = mlp(3, [6], 2)
    K = reference_kernel(model, inputs(model, 7), chunk_size=3)
    assert torch.equal(K, K.T)


def test_chunk_size_default_fits_two_chunks_of_rows_in_the_budget() -> None:
    # 2 live chunks of k rows of length m per sample: 256 MiB / (2 * 2 * 2**20 * 8) = 8 samples
    assert samples_per_chunk(100, 2 * 2, 2**20, None) == DEFAULT_CHUNK_BYTES // (4 * 2**20 * 8)
    assert samples_per_chunk(100, 2, 10, None) == 100
    assert samples_per_chunk(100, 2, 2**40, None) == 1
    assert samples_per_chunk(10, 2, 10, 64) == 10


class _DataDependentBranch(nn.Module):
    """Python control flow on the input values: vmap over samples cannot batch it."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = nn.Parameter(torch.randn(2, 3, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        if bool((x.abs() > 100).any()):
            x = x / 100
        return torch.tanh(x @ self.lin.T)


def test_reference_kernel_falls_back_when_vmap_over_samples_fails() -> None:
    model = _model(_DataDependentBranch(), (3,), 2, "branch")
    X = inputs(model, 4)
    with pytest.raises(RuntimeError):
        torch.func.vmap(lambda x: model.module(x.unsqueeze(0)))(X)
    K = reference_kernel(model, X, chunk_size=2)
    assert rel_err(K, dense_reference_kernel(model, X, model.flat_params())) <= 1e-12


def test_evaluating_at_other_params_leaves_the_model_unchanged() -> None:
    model = mlp(3, [4], 1)
    w0 = model.flat_params().clone()
    reference_kernel(model, inputs(model, 3), params=perturbed(model))
    assert torch.equal(model.flat_params(), w0)


def test_tangent_kernel_rejects_inputs_of_the_wrong_shape() -> None:
    model = mlp(3, [4], 1)
    with pytest.raises(ShapeMismatchError, match=r"shape \(5, 4\).*\(n, 3\)"):
        tangent_kernel(model, torch.zeros(5, 4, dtype=torch.float64))
    with pytest.raises(ShapeMismatchError, match="no sample"):
        tangent_kernel(model, torch.zeros(0, 3, dtype=torch.float64))


def test_tangent_kernel_rejects_non_float64_or_non_finite_inputs() -> None:
    model = mlp(3, [4], 1)
    with pytest.raises(DatasetError, match=r"float64, got torch\.float32"):
        tangent_kernel(model, torch.zeros(2, 3, dtype=torch.float32))
    X = torch.zeros(2, 3, dtype=torch.float64)
    X[1, 2] = float("nan")
    with pytest.raises(DatasetError, match="1 non-finite"):
        tangent_kernel(model, X)


def test_tangent_kernel_rejects_bad_parameter_vectors() -> None:
    model = mlp(3, [4], 1)
    X = inputs(model, 2)
    m = model.n_params
    with pytest.raises(ShapeMismatchError, match=rf"shape \({m + 1},\).*m = {m}"):
        tangent_kernel(model, X, params=torch.zeros(m + 1, dtype=torch.float64))
    with pytest.raises(DatasetError, match="float32"):
        tangent_kernel(model, X, params=torch.zeros(m, dtype=torch.float32))
    w = model.flat_params().clone()
    w[0] = float("inf")
    with pytest.raises(NumericalError, match="1 non-finite"):
        tangent_kernel(model, X, params=w)


def test_tangent_kernel_rejects_unknown_methods() -> None:
    model = mlp(3, [4], 1)
    with pytest.raises(OptionsError, match=r"unknown kernel method 'dense'.*'structured'"):
        tangent_kernel(model, inputs(model, 2), method="dense")


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5])
def test_tangent_kernel_rejects_non_positive_chunk_sizes(chunk_size: int) -> None:
    model = mlp(3, [4], 1)
    with pytest.raises(
        OptionsError, match=f"chunk_size must be a positive integer, got {chunk_size}"
    ):
        tangent_kernel(model, inputs(model, 2), chunk_size=chunk_size)


def test_tangent_kernel_reports_overflow_as_numerical_error() -> None:
    model = mlp(3, [4], 1, activation="identity")
    w = torch.full((model.n_params,), 1e200, dtype=torch.float64)
    with pytest.raises(NumericalError, match="non-finite entries"):
        tangent_kernel(model, inputs(model, 2), method="reference", params=w)


@pytest.mark.parametrize("method", ["reference", "structured"])
def test_kernel_is_computed_even_under_an_outer_no_grad(method: str) -> None:
    model = mlp(3, [5], 2)
    X = inputs(model, 3)
    with torch.no_grad():
        K = tangent_kernel(model, X, method)
    assert rel_err(K, dense_reference_kernel(model, X, model.flat_params())) <= 1e-12


def test_public_api_exports_tangent_kernel() -> None:
    import plcore

    assert plcore.tangent_kernel is tangent_kernel
