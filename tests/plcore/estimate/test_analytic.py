from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from plcore.errors import OptionsError
from plcore.estimate.analytic import beta_upper_bound, shared_structure
from plcore.estimate.bounds import lipschitz_upper_bound, mu_lower_bound
from plcore.estimate.probes import probe_ball
from plcore.hessian.dense import brute_force_tensor_norm, dense_output_hessians
from plcore.hessian.tensor_norm import hessian_tensor_norm
from plcore.kernel import jacobian, tangent_kernel
from plcore.models.base import Model
from plcore.models.layers import Activation, Dense
from tests.plcore.hessian.nets import tiny_data, tiny_mlp

CASES = [
    # (widths, activation, output activation, bias)
    ([3, 6, 2], "tanh", None, True),
    ([3, 5, 4, 2], "sigmoid", None, True),
    ([2, 8, 1], "softplus", "tanh", True),
    ([4, 7, 3], "gelu", None, False),
    ([2, 4, 4, 1], "sin", None, True),
]


def _ball_point(w0: torch.Tensor, rho: float, g: torch.Generator, on_sphere: bool) -> torch.Tensor:
    d = torch.randn(w0.numel(), generator=g)
    r = rho if on_sphere else rho * float(torch.rand(1, generator=g))
    return w0 + r * d / d.norm()


@pytest.mark.parametrize(("widths", "act", "out_act", "bias"), CASES)
def test_bound_dominates_sampled_points_of_the_ball(
    widths: list[int], act: str, out_act: str | None, bias: bool
) -> None:
    model = tiny_mlp(widths, act, seed=2, output_activation=out_act, bias=bias)
    X = tiny_data(3, widths[0], widths[-1]).X
    rho = 0.5
    bound = beta_upper_bound(model, X, rho)
    assert bound is not None and math.isfinite(bound.beta_upper)
    g = torch.Generator().manual_seed(0)
    w0 = model.flat_params()
    best_h = best_j = 0.0
    for t in range(10):
        w = _ball_point(w0, rho, g, on_sphere=t % 2 == 0)
        # any feasible (a, u) gives a lower bound of ||H_F(w)||: a loose solve suffices here
        h = hessian_tensor_norm(
            model, X, params=w, generator=g, restarts=1, tol=1e-6, max_iter=40
        ).value
        j = float(torch.linalg.matrix_norm(jacobian(model, X, params=w), 2))
        best_h, best_j = max(best_h, h), max(best_j, j)
        assert h <= bound.beta_upper
        assert j <= bound.jacobian_upper
    print(
        f"{widths} {act}: bound/estimate = {bound.beta_upper / best_h:.3g} (hessian), "
        f"{bound.jacobian_upper / best_j:.3g} (jacobian)"
    )
    assert bound.beta_upper / best_h < 1e4


@pytest.mark.parametrize(("widths", "act", "out_act", "bias"), CASES[:3])
def test_bound_dominates_adversarial_ascent(
    widths: list[int], act: str, out_act: str | None, bias: bool
) -> None:
    model = tiny_mlp(widths, act, seed=4, output_activation=out_act, bias=bias)
    data = tiny_data(2, widths[0], widths[-1])
    rho = 1.0
    bound = beta_upper_bound(model, data.X, rho)
    assert bound is not None
    probe = probe_ball(
        model,
        data,
        rho,
        generator=torch.Generator().manual_seed(1),
        n_sphere=1,
        n_adversarial=1,
        adversarial_steps=4,
    )
    assert probe.beta_F_lower <= bound.beta_upper
    assert probe.L_F_lower <= bound.jacobian_upper


def test_bound_at_radius_zero_dominates_the_exact_norm_at_a_shifted_centre() -> None:
    model = tiny_mlp([3, 5, 2], "tanh", seed=0)
    X = tiny_data(2, 3, 2).X
    w = model.flat_params() + 0.3
    bound = beta_upper_bound(model, X, 0.0, params=w)
    assert bound is not None
    exact = brute_force_tensor_norm(
        dense_output_hessians(model, X, params=w), generator=torch.Generator().manual_seed(0)
    ).value
    J = jacobian(model, X, params=w)
    assert exact <= bound.beta_upper
    assert float(torch.linalg.matrix_norm(J, 2)) <= bound.jacobian_upper


def test_perturbation_bounds_with_the_analytic_beta_hold_in_the_ball() -> None:
    model = tiny_mlp([2, 10, 1], "tanh", seed=0)
    X = tiny_data(3, 2, 1).X
    K0 = tangent_kernel(model, X)
    ev = torch.linalg.eigvalsh(K0)
    lambda0, jac0 = float(ev[0]), math.sqrt(float(ev[-1]))
    rho = 0.5 * math.sqrt(lambda0) / beta_upper_bound(model, X, 1.0).beta_upper  # type: ignore[union-attr]
    bound = beta_upper_bound(model, X, rho)
    assert bound is not None
    mu_lb = mu_lower_bound(lambda0, bound.beta_upper, rho)
    lf_ub = lipschitz_upper_bound(jac0, bound.beta_upper, rho)
    assert mu_lb > 0
    g = torch.Generator().manual_seed(3)
    w0 = model.flat_params()
    for t in range(30):
        w = _ball_point(w0, rho, g, on_sphere=t % 3 != 0)
        evw = torch.linalg.eigvalsh(tangent_kernel(model, X, params=w))
        assert float(evw[0]) >= mu_lb
        assert math.sqrt(float(evw[-1])) <= lf_ub


def test_ntk_one_hidden_layer_bound_decays_like_inverse_square_root_width() -> None:
    X = tiny_data(4, 3, 1).X
    widths = [256, 512, 1024, 2048, 4096]
    betas = []
    for n in widths:
        bound = beta_upper_bound(tiny_mlp([3, n, 1], "tanh", seed=1), X, 1.0)
        assert bound is not None
        betas.append(bound.beta_upper)
    slope = float(np.polyfit(np.log(widths), np.log(betas), 1)[0])
    print(f"log-log slope of the analytic beta bound against width: {slope:.3f}")
    assert -0.6 < slope < -0.35


def _model(module: nn.Module, d: int, k: int) -> Model:
    return Model(
        module=module.double().eval(), input_shape=(d,), output_dim=k, format="json", sha256="t"
    )


def test_unsupported_models_give_none() -> None:
    X = tiny_data(2, 3, 1).X
    relu = tiny_mlp([3, 4, 1], "relu", seed=0)
    assert beta_upper_bound(relu, X, 1.0) is None
    plain = tiny_mlp([3, 4, 1], seed=0)
    with_dropout = _model(nn.Sequential(*plain.module.children(), nn.Dropout(0.0)), 3, 1)
    assert beta_upper_bound(with_dropout, X, 1.0) is None
    not_sequential = _model(nn.ModuleList(list(plain.module.children()))[0], 3, 4)
    assert beta_upper_bound(not_sequential, X, 1.0) is None


def test_identity_and_flatten_modules_are_skipped() -> None:
    X = tiny_data(2, 3, 1).X
    plain = tiny_mlp([3, 4, 1], seed=0)
    padded = _model(nn.Sequential(nn.Flatten(), *plain.module.children(), nn.Identity()), 3, 1)
    a, b = beta_upper_bound(plain, X, 0.5), beta_upper_bound(padded, X, 0.5)
    assert a is not None and b is not None
    assert (a.beta_upper, a.jacobian_upper) == (b.beta_upper, b.jacobian_upper)


def test_invalid_radius_is_rejected() -> None:
    model = tiny_mlp([3, 4, 1], seed=0)
    with pytest.raises(OptionsError, match=r"got -1\.0"):
        beta_upper_bound(model, tiny_data(2, 3, 1).X, -1.0)


def test_a_module_applied_twice_gets_no_proven_bound() -> None:
    g = torch.Generator().manual_seed(0)
    hidden = Dense(torch.randn(4, 4, generator=g, dtype=torch.float64), None)
    first = Dense(torch.randn(4, 3, generator=g, dtype=torch.float64), None)
    last = Dense(torch.randn(1, 4, generator=g, dtype=torch.float64), None)
    tied = _model(
        nn.Sequential(first, Activation("tanh"), hidden, Activation("tanh"), hidden, last), 3, 1
    )
    assert shared_structure(tied.module) is not None
    assert beta_upper_bound(tied, tiny_data(2, 3, 1).X, 0.1) is None


def test_a_parameter_shared_by_two_modules_gets_no_proven_bound() -> None:
    plain = tiny_mlp([3, 3, 3, 1], seed=0)
    dense = [m for m in plain.module if isinstance(m, Dense)]
    dense[1].weight = dense[0].weight  # tied by hand
    why = shared_structure(plain.module)
    assert why is not None and "tied" in why
    assert beta_upper_bound(plain, tiny_data(2, 3, 1).X, 0.1) is None


def test_untied_chain_has_no_shared_structure() -> None:
    assert shared_structure(tiny_mlp([3, 4, 4, 1], seed=0).module) is None


def test_norm_cache_gives_the_same_bound_and_is_filled_once() -> None:
    model = tiny_mlp([3, 5, 4, 1], seed=3)
    X = tiny_data(2, 3, 1).X
    cache: dict[object, object] = {}
    a = beta_upper_bound(model, X, 0.2, norm_cache=cache)
    filled = dict(cache)
    b = beta_upper_bound(model, X, 0.2, norm_cache=cache)
    plain = beta_upper_bound(model, X, 0.2)
    assert a is not None and b is not None and plain is not None
    # one centre analysis, reused (the same object) for the second radius
    assert list(filled) == ["centre"] and cache["centre"] is filled["centre"]
    assert a.beta_upper == b.beta_upper == plain.beta_upper
