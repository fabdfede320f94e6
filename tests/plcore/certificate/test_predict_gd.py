"""GD predictions: step, rate, iterations, and the MSE / sum step conventions."""

from __future__ import annotations

import math

import pytest
import torch

from plcore.certificate.predict_gd import (
    GDConstants,
    check_learning_rate,
    iterations_to,
    mse_step_from_sum,
    predict_gd,
    safe_step,
    sum_step_from_mse,
)
from plcore.models.spec import load_spec_model


def test_safe_step_is_inverse_of_loss_hessian_bound() -> None:
    assert safe_step(2.0, 0.5, 4.0) == pytest.approx(1.0 / (4.0 + 2.0))


def test_safe_step_refuses_zero_curvature() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        safe_step(0.0, 0.0, 1.0)


def test_iterations_match_closed_form_and_actually_reach_target() -> None:
    L0, eps, eta, mu = 3.0, 1e-9, 0.01, 2.5
    T = iterations_to(L0, eps, eta, mu)
    assert math.ceil(math.log(L0 / eps) / -math.log(1 - eta * mu)) == T
    q = 1 - eta * mu
    assert q**T * L0 <= eps < q ** (T - 1) * L0


def test_iterations_are_zero_below_target_and_none_without_contraction() -> None:
    assert iterations_to(1e-9, 1e-6, 0.1, 1.0) == 0
    assert iterations_to(1.0, 1e-6, 0.1, 0.0) is None
    assert iterations_to(1.0, 1e-6, 1.0, 1.0) == 1


def test_predict_gd_fills_rate_kappa_and_mse_step() -> None:
    gd = predict_gd(GDConstants(2.0, 0.0, 1.0, 1.0, "t"), loss0=1.0, n_samples=10, target_loss=None)
    assert gd.step_size == pytest.approx(0.25)
    assert gd.step_size_mse_mean == pytest.approx(10 * 0.25 / 2)
    assert gd.kappa == pytest.approx(4.0)
    assert gd.rate == pytest.approx(0.75)
    assert gd.target_loss == pytest.approx(1e-6)


def test_planned_learning_rate_converted_from_mse_and_judged() -> None:
    eta, n = 0.1, 20
    safe = check_learning_rate(mse_step_from_sum(eta, n) * 0.5, "mse", eta, n)
    assert safe.safe and safe.ratio_to_safe == pytest.approx(0.5)
    unsafe = check_learning_rate(0.3, "sum", eta, n)
    assert not unsafe.safe and unsafe.ratio_to_safe == pytest.approx(3.0)
    assert "no guarantee" in unsafe.message


def test_gd_on_mse_with_mse_step_equals_gd_on_sum_loss() -> None:
    spec = {"type": "mlp", "input_dim": 3, "widths": [7], "output_dim": 2, "activation": "tanh"}
    model = load_spec_model(spec)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(5, 3, generator=g)
    Y = torch.randn(5, 2, generator=g)
    n, eta = X.shape[0], 0.05
    w_sum = model.flat_params().clone()
    w_mse = w_sum.clone()
    for _ in range(5):
        for which in ("sum", "mse"):
            w = (w_sum if which == "sum" else w_mse).clone().requires_grad_(True)
            r = model.apply_flat(w, X) - Y.reshape(-1)
            if which == "sum":
                loss = 0.5 * (r**2).sum()
                (grad,) = torch.autograd.grad(loss, w)
                w_sum = (w - eta * grad).detach()
            else:
                loss = (r**2).sum() / n  # (1/n) sum_i ||f(x_i) - y_i||^2
                (grad,) = torch.autograd.grad(loss, w)
                w_mse = (w - mse_step_from_sum(eta, n) * grad).detach()
    torch.testing.assert_close(w_mse, w_sum, rtol=1e-13, atol=1e-15)
    assert sum_step_from_mse(mse_step_from_sum(eta, n), n) == pytest.approx(eta)
