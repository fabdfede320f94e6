from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from plcore.dataset import Dataset
from plcore.errors import ShapeMismatchError
from plcore.estimate.spectral import initial_quantities
from plcore.kernel import jacobian
from plcore.models.base import Model
from plcore.models.layers import Conv2d, Dense
from tests.plcore.hessian.nets import tiny_data, tiny_mlp


def test_quantities_match_dense_jacobian_and_numpy() -> None:
    model = tiny_mlp([3, 6, 2], "tanh", seed=0)
    data = tiny_data(4, 3, 2)
    q = initial_quantities(model, data, kernel_method="reference")
    J = jacobian(model, data.X).numpy()
    r0 = model.apply_flat(model.flat_params(), data.X).detach().numpy() - data.y.numpy().ravel()
    ev = np.linalg.eigvalsh(J @ J.T)
    np.testing.assert_allclose(q.r0.numpy(), r0, rtol=1e-13)
    assert q.loss == pytest.approx(0.5 * float(r0 @ r0), rel=1e-13)
    assert q.residual_norm == pytest.approx(float(np.linalg.norm(r0)), rel=1e-13)
    np.testing.assert_allclose(q.eigenvalues.numpy(), ev, rtol=1e-10, atol=1e-12)
    assert q.lambda_min == pytest.approx(ev[0], rel=1e-10)
    assert q.lambda_max == pytest.approx(ev[-1], rel=1e-10)
    assert q.condition_number == pytest.approx(ev[-1] / ev[0], rel=1e-8)
    assert q.jacobian_norm == pytest.approx(np.linalg.norm(J, 2), rel=1e-10)
    assert (q.n_samples, q.n_outputs, q.N, q.m) == (4, 2, 8, model.n_params)
    assert q.kernel_method == "reference"


def test_sample_major_residual_order() -> None:
    model = tiny_mlp([2, 3, 2], seed=1)
    data = tiny_data(3, 2, 2)
    q = initial_quantities(model, data)
    out = model.apply(model.named_params(), data.X).detach()
    assert float(q.r0[1 * 2 + 1]) == pytest.approx(float(out[1, 1] - data.y[1, 1]), rel=1e-14)


def test_under_parameterized_problem_has_infinite_condition_number() -> None:
    # m = 3*1 + 1 = 4 parameters, N = 6 constraints: K has rank <= 4 < 6
    model = tiny_mlp([3, 1], seed=0)
    q = initial_quantities(model, tiny_data(6, 3, 1))
    assert q.lambda_min_raw < 1e-10
    assert q.lambda_min >= 0.0
    assert q.lambda_min == max(q.lambda_min_raw, 0.0)
    if q.lambda_min == 0.0:
        assert math.isinf(q.condition_number)


def test_targets_of_the_wrong_shape_are_rejected() -> None:
    model = tiny_mlp([3, 4, 2], seed=0)
    data = tiny_data(4, 3, 2)
    bad = Dataset(X=data.X, y=data.y[:, :1], sha256="x")
    with pytest.raises(ShapeMismatchError, match=r"y has shape \(4, 1\), expected \(4, 2\)"):
        initial_quantities(model, bad)


@pytest.mark.parametrize("method", ["reference", "structured"])
def test_floating_point_bounds_bracket_the_exact_spectrum_of_the_dense_jacobian(
    method: str,
) -> None:
    import mpmath

    mpmath.mp.dps = 50
    model = tiny_mlp([3, 6, 2], "tanh", seed=0)
    data = tiny_data(4, 3, 2)
    q = initial_quantities(model, data, kernel_method=method)
    J = mpmath.matrix(jacobian(model, data.X).tolist())
    ev = mpmath.eigsy(J * J.T, eigvals_only=True)
    exact = sorted(ev[i] for i in range(ev.rows))
    assert q.lambda_min_lower > 0 and mpmath.mpf(q.lambda_min_lower) <= exact[0]
    assert q.lambda_min_lower >= float(exact[0]) * (1 - 1e-8)
    assert mpmath.mpf(q.jacobian_norm_upper) >= mpmath.sqrt(exact[-1])
    assert q.jacobian_norm_upper <= float(mpmath.sqrt(exact[-1])) * (1 + 1e-8)
    r = [mpmath.mpf(v) for v in q.r0.tolist()]
    assert mpmath.mpf(q.residual_norm_upper) >= mpmath.sqrt(mpmath.fsum(v * v for v in r))
    assert "Cholesky" in q.lower_bound_method


def test_floating_point_lower_bound_is_refused_when_k_is_singular() -> None:
    model = tiny_mlp([3, 1], seed=0)  # m = 4 < N = 6: K singular
    q = initial_quantities(model, tiny_data(6, 3, 1))
    assert q.lambda_min_lower == 0.0


def test_accumulation_length_covers_position_sums_of_convolutions() -> None:
    from plcore.estimate.spectral import kernel_accumulation_length
    from tests.plcore.audit.family import cnn

    dense = tiny_mlp([3, 4, 1], seed=0)
    n_mod = sum(1 for _ in dense.module.modules())
    assert kernel_accumulation_length(dense) == dense.n_params + 4 * (n_mod + 2)
    conv = cnn("tanh", seed=0)  # 2x2 kernel on 3x3 images: 4 output positions, 4^2 pairs
    assert kernel_accumulation_length(conv) >= conv.n_params + 4 * 4
    # padding can make the output larger than the input (1x2x2 -> 2x8x8): 64^2 pairs
    wide = Model(
        nn.Sequential(
            Conv2d(torch.ones(2, 1, 1, 1, dtype=torch.float64), None, padding=(3, 3)),
            nn.Flatten(),
            Dense(torch.ones(1, 128, dtype=torch.float64), None),
        ),
        (1, 2, 2),
        1,
        "json",
        "",
    )
    assert kernel_accumulation_length(wide) >= wide.n_params + 64 * 64


def test_underparameterized_problem_uses_the_parameter_gram() -> None:
    """N > m: lambda_min(K) = 0 by rank, the spectrum is K's (G's padded with zeros), and the
    certified ||J|| bound sits just above the eigvalsh value of the dense K."""
    from plcore import load_model
    from plcore.kernel import tangent_kernel

    model = load_model(
        {"type": "mlp", "input_dim": 3, "widths": [5], "output_dim": 2, "activation": "tanh"}
    )
    g = torch.Generator().manual_seed(2)
    X = torch.randn(30, 3, generator=g, dtype=torch.float64)
    data = Dataset(X=X, y=torch.randn(30, 2, generator=g, dtype=torch.float64), sha256="0" * 64)
    iq = initial_quantities(model, data)
    evK = torch.linalg.eigvalsh(tangent_kernel(model, X, "reference"))
    assert iq.N == 60 > iq.m == 32
    assert iq.kernel_method == "parameter-gram"
    assert iq.lambda_min == iq.lambda_min_raw == iq.lambda_min_lower == 0.0
    assert iq.eigenvalues.shape == (60,)
    torch.testing.assert_close(iq.eigenvalues, evK.clamp(min=0.0), rtol=1e-10, atol=1e-10)
    assert iq.jacobian_norm == pytest.approx(float(evK[-1]) ** 0.5, rel=1e-12)
    assert iq.jacobian_norm <= iq.jacobian_norm_upper <= iq.jacobian_norm * (1 + 1e-8)
    assert "lambda_min(K) = 0 by rank" in iq.lower_bound_method
