"""The layer building blocks: forward formulas and the activation derivative bounds."""

from __future__ import annotations

import math

import pytest
import torch

from plcore.models.layers import ACTIVATIONS, Activation, Bias, Conv2d, Dense, Scale


def _derivatives(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """phi' and phi'' by autograd (independent of the closed forms in ActivationInfo)."""
    x = x.clone().requires_grad_(True)
    y = Activation(name)(x)
    (d1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    if not d1.requires_grad:  # phi' constant (identity): phi'' = 0
        return d1.detach(), torch.zeros_like(x)
    (d2,) = torch.autograd.grad(d1.sum(), x)
    return d1.detach(), d2.detach()


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivative_sups_match_a_fine_grid(name: str) -> None:
    info = ACTIVATIONS[name]
    x = torch.linspace(-12.0, 12.0, 480_001, dtype=torch.float64)
    d1, d2 = _derivatives(name, x)
    # The closed form is a true sup: never below the grid maximum, and tight (softplus' = sigmoid
    # approaches its sup 1 only at infinity: 1 - sigmoid(12) ~ 6e-6).
    assert d1.abs().max().item() <= info.d1_sup * (1 + 1e-9)
    assert d1.abs().max().item() == pytest.approx(info.d1_sup, rel=1e-5)
    if info.twice_differentiable:
        assert info.d2_sup is not None
        assert d2.abs().max().item() <= info.d2_sup * (1 + 1e-9)
        assert d2.abs().max().item() == pytest.approx(info.d2_sup, rel=1e-6, abs=1e-12)
    else:
        assert info.d2_sup is None


def test_unknown_activation_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*tanh"):
        Activation("swish")


def test_dense_computes_scaled_affine_map() -> None:
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 5, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    layer = Dense(W, b, weight_scale=1 / math.sqrt(5), bias_scale=0.1)
    expected = (x @ W.T) / math.sqrt(5) + 0.1 * b
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-14)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]


def test_dense_rejects_non_matrix_weight() -> None:
    with pytest.raises(ValueError, match=r"Dense weight must be 2-D, got shape \(3,\)"):
        Dense(torch.zeros(3), None)


def test_conv2d_matches_torch_conv_with_scales() -> None:
    g = torch.Generator().manual_seed(1)
    W = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    x = torch.randn(2, 2, 6, 6, generator=g, dtype=torch.float64)
    layer = Conv2d(W, b, padding=(1, 1), weight_scale=0.5, bias_scale=2.0)
    expected = torch.nn.functional.conv2d(x, 0.5 * W, 2.0 * b, padding=1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_bias_and_scale_broadcast_their_parameter() -> None:
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    v = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(Bias(v, scale=-1.0)(x), x - v)
    torch.testing.assert_close(Scale(v, scale=2.0)(x), x * 2 * v)
