"""The closing factor ||r0|| / r* at w0 shrinks with width for NTK tanh networks (slow)."""

from __future__ import annotations

import itertools

import pytest
import torch

from plcore.certificate.budget import get_budget
from plcore.certificate.stages import w0_closing_factor
from plcore.certificate.width import closing_factor, fit_width
from plcore.estimate.analytic import beta_upper_bound
from plcore.estimate.spectral import initial_quantities
from tests.plcore.certify_cases import mlp, ntk_tanh_spec, unit_sphere_data

WIDTHS = [256, 1024, 4096, 16384]


@pytest.mark.slow
def test_factor_improves_with_width_and_extrapolates_to_a_closing_width() -> None:
    data = unit_sphere_data()
    budget = get_budget("fast")
    est, proven = [], []
    for width in WIDTHS:
        model = mlp(ntk_tanh_spec(width))
        f = w0_closing_factor(model, data, torch.Generator().manual_seed(0), budget, "auto")
        assert f is not None
        est.append(f)
        q = initial_quantities(model, data)
        bound = beta_upper_bound(model, data.X, 1.0)
        assert bound is not None
        pf = closing_factor(q.residual_norm, q.lambda_min, q.jacobian_norm, bound.beta_upper)
        assert pf is not None
        proven.append(pf)
    assert all(a > b for a, b in itertools.pairwise(est)), est
    assert all(a > b for a, b in itertools.pairwise(proven)), proven
    slope, w_close = fit_width(WIDTHS, est)
    assert slope is not None and -0.8 < slope < -0.3  # THEORY 5: about -1/2
    assert w_close is not None and w_close > WIDTHS[-1]
