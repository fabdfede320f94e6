from __future__ import annotations

import math

import pytest
import torch

from plcore.errors import ResourceLimitError, ShapeMismatchError
from plcore.hessian import dense
from plcore.hessian.dense import brute_force_tensor_norm, dense_output_hessians
from tests.plcore.hessian.nets import tiny_data, tiny_mlp


def test_dense_hessians_are_symmetric_and_match_finite_differences_of_gradients() -> None:
    model = tiny_mlp([2, 4, 2], "sigmoid", seed=3)
    X = tiny_data(2, 2, 2).X
    w = model.flat_params()
    H = dense_output_hessians(model, X)
    assert H.shape == (4, model.n_params, model.n_params)
    torch.testing.assert_close(H, H.transpose(1, 2))
    i, h = 3, 1e-5
    grad = lambda v: torch.func.grad(lambda p: model.apply_flat(p, X)[i])(v)  # noqa: E731
    e = torch.zeros_like(w)
    e[5] = 1.0
    fd = (grad(w + h * e) - grad(w - h * e)) / (2 * h)
    torch.testing.assert_close(H[i, :, 5], fd, rtol=1e-6, atol=1e-8)


def test_dense_hessians_refuse_large_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dense, "DENSE_ENTRY_LIMIT", 100)
    model = tiny_mlp([2, 4, 2], seed=0)
    with pytest.raises(ResourceLimitError, match=r"N\*m\^2 = 4\*22\^2 = 1936"):
        dense_output_hessians(model, tiny_data(2, 2, 2).X)


def test_brute_force_on_the_circle_finds_the_known_maximum() -> None:
    # ||a1 diag(1, 0) + a2 [[0, 1], [1, 0]]|| over the unit circle
    H = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
    # eigenvalues of [[a1, a2], [a2, 0]]: (a1 +- sqrt(a1^2 + 4 a2^2)) / 2, maximal when
    # a1^2 + 4 a2^2 is largest with a1 > 0: a2 = +-1, a1 = 0 gives 1 ... check by calculus:
    t = torch.linspace(0, math.pi, 200001)
    vals = (torch.cos(t).abs() + torch.sqrt(torch.cos(t) ** 2 + 4 * torch.sin(t) ** 2)) / 2
    res = brute_force_tensor_norm(H, generator=torch.Generator().manual_seed(0))
    assert res.method == "grid(circle)"
    assert abs(res.value - float(vals.max())) < 1e-9
    assert abs(float(res.a.norm()) - 1.0) < 1e-12


def test_brute_force_multistart_matches_a_diagonal_closed_form() -> None:
    # diagonal H_i: ||sum a_i H_i|| = max_j |sum_i a_i d_ij| = max_j ||d_:j|| (Cauchy-Schwarz)
    g = torch.Generator().manual_seed(1)
    D = torch.randn(4, 6, generator=g)
    H = torch.diag_embed(D)
    res = brute_force_tensor_norm(H, generator=g, n_starts=16)
    assert res.method == "multistart-lbfgs"
    assert abs(res.value - float(D.norm(dim=0).max())) < 1e-9


def test_brute_force_rejects_non_square_stacks() -> None:
    with pytest.raises(ShapeMismatchError, match=r"got \(2, 3, 4\)"):
        brute_force_tensor_norm(torch.zeros(2, 3, 4), generator=torch.Generator())
