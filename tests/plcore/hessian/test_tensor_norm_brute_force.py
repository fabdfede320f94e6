"""The alternating power method against the independent brute-force maximisation."""

from __future__ import annotations

import pytest
import torch

from plcore.hessian.dense import brute_force_tensor_norm, dense_output_hessians
from plcore.hessian.tensor_norm import hessian_tensor_norm
from tests.plcore.hessian.nets import NETS
from tests.plcore.hessian.nets import tiny_problem as _problem


@pytest.mark.parametrize(("widths", "act", "n"), NETS)
def test_power_method_matches_brute_force(widths: list[int], act: str, n: int) -> None:
    model, X = _problem(widths, act, n)
    H = dense_output_hessians(model, X)
    brute = brute_force_tensor_norm(H, generator=torch.Generator().manual_seed(0), n_starts=24)
    res = hessian_tensor_norm(model, X, generator=torch.Generator().manual_seed(1), restarts=4)
    assert res.converged
    assert abs(res.value - brute.value) <= 1e-6 * brute.value
    # the returned (a, u) attain the value: a . H[u, u] = value
    attained = float(torch.einsum("i,ijk,j,k->", res.a, H, res.u, res.u))
    assert abs(attained - res.value) <= 1e-10 * res.value
    assert res.is_lower_bound and res.method == "alternating-power(lanczos)"
