"""The infinite-width NTK: closed forms against Monte Carlo, then K(w0) of wide nets against it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from plcore.errors import OptionsError, ShapeMismatchError
from plcore.kernel import infinite_width_ntk, tangent_kernel
from plcore.kernel.infinite_width import gaussian_expectations, infinite_width_kernels
from tests.plcore.kernel.toy_models import mlp, rel_err

COVARIANCES = [(1.0, 0.3, 0.5), (2.0, -1.2, 1.5), (0.4, 0.39, 0.4), (3.0, 0.0, 0.2)]
SIGMA_W, SIGMA_B = 1.3, 0.2  # sigma_w != 1 so that a missing sigma_w^2 factor shows


def _mc(activation: str, s_uu: float, s_uv: float, s_vv: float, n: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(11)
    L = torch.linalg.cholesky(torch.tensor([[s_uu, s_uv], [s_uv, s_vv]], dtype=torch.float64))
    z = torch.randn(n, 2, generator=g, dtype=torch.float64) @ L.T
    u, v = z[:, 0], z[:, 1]
    if activation == "erf":
        phi = torch.erf(u) * torch.erf(v)
        dphi = (4 / math.pi) * torch.exp(-(u**2) - v**2)
    else:
        phi = torch.relu(u) * torch.relu(v)
        dphi = ((u > 0) & (v > 0)).double()
    return {"phi": phi, "dphi": dphi}


@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("cov", COVARIANCES)
def test_gaussian_expectations_match_monte_carlo(
    activation: str, cov: tuple[float, float, float]
) -> None:
    n = 400_000
    samples = _mc(activation, *cov, n)
    s = [torch.tensor(c, dtype=torch.float64) for c in cov]
    closed = dict(zip(["phi", "dphi"], gaussian_expectations(activation, *s), strict=True))  # type: ignore[arg-type]
    for key, values in samples.items():
        stderr = float(values.std()) / math.sqrt(n)
        assert abs(float(values.mean()) - float(closed[key])) <= 5 * stderr + 1e-12, key


def test_infinite_width_kernels_start_from_the_input_kernel() -> None:
    X = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma, theta = infinite_width_kernels(
        X, hidden_layers=0, activation="erf", weight_std=SIGMA_W, bias_std=SIGMA_B
    )
    expected = SIGMA_W**2 * (X @ X.T) / 3 + SIGMA_B**2
    assert torch.allclose(sigma, expected, rtol=1e-15, atol=0)
    assert torch.equal(theta, sigma)


def test_infinite_width_ntk_is_block_diagonal_over_outputs() -> None:
    X = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    _, theta = infinite_width_kernels(X, hidden_layers=2, activation="relu")
    K = infinite_width_ntk(X, hidden_layers=2, activation="relu", output_dim=3)
    assert K.shape == (12, 12)
    assert torch.equal(K[0::3, 0::3], theta)
    assert torch.equal(K[2::3, 2::3], theta)
    assert float(K[0::3, 1::3].abs().max()) == 0.0


def test_infinite_width_ntk_rejects_unknown_activations_and_image_inputs() -> None:
    X = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(OptionsError, match="no closed-form NTK for activation 'tanh'"):
        infinite_width_ntk(X, hidden_layers=1, activation="tanh")  # type: ignore[arg-type]
    with pytest.raises(ShapeMismatchError, match=r"\(n, d\).*\(2, 1, 3\)"):
        infinite_width_ntk(X.reshape(2, 1, 3), hidden_layers=1, activation="erf")
    with pytest.raises(OptionsError, match="hidden_layers must be >= 0, got -1"):
        infinite_width_ntk(X, hidden_layers=-1, activation="erf")


WIDTHS = [64, 256, 1024, 4096]


def _width_errors(activation: str, hidden_layers: int, seeds: int) -> list[float]:
    """Mean over seeds of ||K(w0) - Theta||_F / ||Theta||_F for n = 8 inputs in d = 4."""
    X = torch.randn(8, 4, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
    theta = infinite_width_ntk(
        X,
        hidden_layers=hidden_layers,
        activation=activation,  # type: ignore[arg-type]
        weight_std=SIGMA_W,
        bias_std=SIGMA_B,
    )
    errors = []
    for width in WIDTHS:
        total = 0.0
        for seed in range(seeds):
            model = mlp(
                4,
                [width] * hidden_layers,
                1,
                activation=activation,
                seed=seed,
                sigma_w=SIGMA_W,
                sigma_b=SIGMA_B,
            )
            total += rel_err(tangent_kernel(model, X, method="structured"), theta)
        errors.append(total / seeds)
    return errors


def _assert_converges(errors: list[float]) -> None:
    slope = float(
        torch.linalg.lstsq(
            torch.stack([torch.log(torch.tensor(WIDTHS, dtype=torch.float64)), torch.ones(4)], 1),
            torch.log(torch.tensor(errors, dtype=torch.float64)).unsqueeze(1),
        ).solution[0, 0]
    )
    assert errors[-1] < 0.5 * errors[0], errors
    assert errors[-1] < 0.05, errors
    assert -0.9 <= slope <= -0.3, (slope, errors)


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_empirical_ntk_of_one_hidden_layer_converges_to_the_closed_form(activation: str) -> None:
    _assert_converges(_width_errors(activation, hidden_layers=1, seeds=3))


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_empirical_ntk_of_two_hidden_layers_converges_to_the_closed_form(activation: str) -> None:
    _assert_converges(_width_errors(activation, hidden_layers=2, seeds=2))
