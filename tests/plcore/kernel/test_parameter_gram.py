"""G = J^T J against the dense Jacobian of torch.autograd on the model's forward, in chunks or
not, and its spectrum against that of K = J J^T (nonzero parts equal)."""

from __future__ import annotations

import pytest
import torch

from plcore import load_model
from plcore.kernel import parameter_gram, tangent_kernel
from plcore.kernel.parameter_gram import chunk_count, gram_accumulation_length

SPEC = {"type": "mlp", "input_dim": 3, "widths": [5], "output_dim": 2, "activation": "tanh"}


def _setup(n: int = 25) -> tuple[object, torch.Tensor, torch.Tensor]:
    model = load_model({**SPEC, "seed": 0})
    X = torch.randn(n, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = model.flat_params()
    J = torch.autograd.functional.jacobian(lambda v: model.apply_flat(v, X), w)
    return model, X, J


@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_equals_the_dense_jacobian_product(chunk_size: int | None) -> None:
    model, X, J = _setup()
    G = parameter_gram(model, X, chunk_size=chunk_size)  # type: ignore[arg-type]
    assert G.shape == (J.shape[1], J.shape[1])
    torch.testing.assert_close(G, J.T @ J, rtol=1e-12, atol=1e-12)
    assert torch.equal(G, G.T)


def test_nonzero_spectrum_is_that_of_the_tangent_kernel() -> None:
    model, X, _ = _setup(n=30)  # N = 60 > m = 32
    evG = torch.linalg.eigvalsh(parameter_gram(model, X))  # type: ignore[arg-type]
    evK = torch.linalg.eigvalsh(tangent_kernel(model, X, "reference"))  # type: ignore[arg-type]
    m = evG.numel()
    torch.testing.assert_close(evK[-m:], evG, rtol=1e-10, atol=1e-10)
    assert evK[:-m].abs().max() < 1e-12


def test_check_runs_before_every_chunk() -> None:
    model, X, _ = _setup()
    calls: list[int] = []
    parameter_gram(model, X, chunk_size=10, check=lambda: calls.append(1))  # type: ignore[arg-type]
    assert len(calls) == chunk_count(25, 2, 32, 10) == 3


def test_accumulation_length_counts_every_product_and_chunk() -> None:
    assert gram_accumulation_length(25, 2, 32, 10) == 50 + 3 + 2
