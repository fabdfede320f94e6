"""The derived SGD step, rate and radius, checked by Monte Carlo on a linear model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plcore.certificate.checking_run import sgd_run
from plcore.certificate.predict_sgd import (
    per_sample_smoothness,
    predict_sgd,
    sgd_radius,
    sgd_rate,
    sgd_step,
)
from plcore.models.spec import load_spec_model

N_SAMPLES, DIM = 6, 60


def _problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.standard_normal((N_SAMPLES, DIM)), rng.standard_normal(N_SAMPLES)


def test_step_formula_matches_theory() -> None:
    mu, beta, n, s = 0.5, 4.0, 10, 3
    assert sgd_step(mu, beta, n, s) == pytest.approx(mu / (beta * (n * beta + mu * (s - 1))))
    assert sgd_rate(mu, 0.01, n, s) == pytest.approx(1 - mu * s * 0.01 / n)
    assert sgd_radius(beta, 2.0, mu, n, 0.1) == pytest.approx(2 * n * np.sqrt(16.0) / 0.05)


def test_per_sample_smoothness_of_linear_model_is_max_row_norm_squared() -> None:
    X, y = _problem()
    K = torch.tensor(X @ X.T)
    beta = per_sample_smoothness(K, torch.tensor(y), 1, beta_F=0.0)
    assert beta == pytest.approx(float((X**2).sum(1).max()), rel=1e-12)


def test_per_sample_smoothness_uses_k_by_k_blocks() -> None:
    J = torch.randn(4 * 2, 9, generator=torch.Generator().manual_seed(0))
    K = J @ J.T
    r = torch.randn(8, generator=torch.Generator().manual_seed(1))
    beta = per_sample_smoothness(K, r, 2, beta_F=0.5)
    want = max(
        float(
            torch.linalg.matrix_norm(J[2 * i : 2 * i + 2], 2) ** 2
            + 0.5 * r[2 * i : 2 * i + 2].norm()
        )
        for i in range(4)
    )
    assert beta == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("s", [1, 3])
def test_expected_loss_contracts_at_derived_rate_monte_carlo(s: int) -> None:
    X, y = _problem()
    n = N_SAMPLES
    mu = float(np.linalg.eigvalsh(X @ X.T)[0])
    beta = float((X**2).sum(1).max())
    L0 = 0.5 * float(y @ y)
    (pred,) = predict_sgd(
        [s], mu=mu, beta=beta, n=n, loss0=L0, target_loss=1e-6 * L0, confidence=0.9
    )
    assert pred.step_size is not None and pred.rate is not None and pred.radius is not None
    runs, T = 2000, 300
    rng = np.random.default_rng(11)
    W = np.zeros((runs, DIM))
    mean_loss = [L0]
    sem = [0.0]
    max_dist = np.zeros(runs)
    for _ in range(T):
        idx = rng.integers(0, n, size=(runs, s))
        Xb = X[idx]  # runs x s x d
        rb = np.einsum("rsd,rd->rs", Xb, W) - y[idx]
        W = W - pred.step_size * np.einsum("rsd,rs->rd", Xb, rb)
        max_dist = np.maximum(max_dist, np.linalg.norm(W, axis=1))
        losses = 0.5 * ((W @ X.T - y) ** 2).sum(1)
        mean_loss.append(float(losses.mean()))
        sem.append(float(losses.std(ddof=1) / np.sqrt(runs)))
    t = np.arange(T + 1)
    bound = pred.rate**t * L0
    assert np.all(np.array(mean_loss) <= bound + 4 * np.array(sem) + 1e-15)
    assert mean_loss[-1] < 0.9 * mean_loss[0]  # the run did contract: the check has teeth
    assert np.mean(max_dist > pred.radius) <= 1 - pred.confidence


def test_sgd_run_matches_an_independent_loop_with_the_same_batches() -> None:
    X, y = _problem()
    spec = {
        "type": "mlp",
        "input_dim": DIM,
        "widths": [],
        "output_dim": 1,
        "activation": "identity",
        "bias": False,
        "parameterization": "standard",
    }
    model = load_spec_model(spec)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    w0 = model.flat_params()
    losses = sgd_run(
        model,
        Xt,
        yt,
        w0,
        step_size=0.01,
        batch_size=2,
        steps=20,
        generator=torch.Generator().manual_seed(5),
    )
    gen = torch.Generator().manual_seed(5)
    w = w0.numpy().copy()
    want = []
    for t in range(21):
        want.append(0.5 * float(((X @ w - y) ** 2).sum()))
        if t < 20:
            idx = torch.randint(N_SAMPLES, (2,), generator=gen).numpy()
            w = w - 0.01 * X[idx].T @ (X[idx] @ w - y[idx])
    np.testing.assert_allclose(losses, want, rtol=1e-12)
