"""Audit of every number of a certification report against an independent computation.

Rule of the project: every number in a report has a test against an independent computation.
``certify`` runs once on each of three small problems; each number of the report is then
recomputed here with plain torch / numpy / scipy (tests/plcore/audit_support.py: dense Jacobians
and Hessians, eigvalsh, brute-force optimisation, dense grids, a plain GD loop) or, for
derived numbers, from the report's own inputs with the documented formula (docs/theory.md).

The problems (budget "fast", short checking runs, SGD batch sizes [1, 2]):

* ``linear``: f(x) = w.x, n = 6, d = 12: certified at w0 in the rigorous tier, beta_F = 0.
* ``tanh``: NTK MLP 3-24-1 tanh, n = 6, targets y = F(w0) - 1e-5 u (u a random unit vector):
  certified at w0 in the rigorous tier with a nonzero proven beta_F.
* ``erf``: NTK MLP 3-16-2 erf (k = 2), n = 5, targets y = F(w0) - 3e-3 v_max - 1e-5 v_min
  (v_max, v_min the extreme eigenvectors of K(w0)): the certificate does not close at w0; the
  fast kernel direction decays within a few steps and the path certificate closes at a step
  t* > 0 (rigorous tier); PL*_eps is reported.

Where a report number is only an estimate (a lower estimate of a sup, an upper estimate of an
inf), the test checks that it is on the right side of the independent value and says so in its
name. Proven bounds are checked at random points of their ball (they must hold everywhere).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np
import pytest
import torch

from plcore import load_dataset, load_model
from plcore.options import CertifyOptions
from plcore.report.schema import Report
from tests.plcore.audit_support import (
    FlatMap,
    GDRun,
    ball_points,
    kernel_eigenvalues,
    max_output_hessian_norm,
    path_gap,
    path_threshold_grid,
    residual_threshold_grid,
    run_gd,
    spectral_norm,
    tensor_norm_brute_force,
)

CASES = ("linear", "tanh", "erf")
BATCH_SIZES = [1, 2]
EXACT = 1e-9  # relative agreement of two float64 implementations of the same exact quantity


def _certify_function() -> Callable[..., Report]:
    """plcore's public certify (CONTRACT.md: ``from plcore import certify``)."""
    from plcore import certify

    return certify


def _mlp_spec(d: int, widths: list[int], k: int, activation: str, param: str) -> dict[str, Any]:
    """A spec with every field explicit, so that its canonical JSON is known here."""
    return {
        "type": "mlp",
        "input_dim": d,
        "widths": widths,
        "output_dim": k,
        "activation": activation,
        "output_activation": None,
        "parameterization": param,
        "weight_std": 1.0,
        "bias_std": 0.1,
        "bias": bool(widths),
        "seed": 1 if activation == "erf" else 0,
    }


def _unit_inputs(n: int, d: int, seed: int) -> tuple[np.ndarray, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    return (X / X.norm(dim=1, keepdim=True)).numpy(), g


def _problem(name: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray, int]:
    """(spec, X, y (n, k), validation_steps) of a named problem (module docstring)."""
    if name == "linear":
        X, g = _unit_inputs(6, 12, 1)
        y = 0.5 * torch.randn(6, 1, generator=g, dtype=torch.float64).numpy()
        return _mlp_spec(12, [], 1, "identity", "standard"), X, y, 30
    if name == "tanh":
        spec = _mlp_spec(3, [24], 1, "tanh", "ntk")
        X, g = _unit_inputs(6, 3, 2)
        F = FlatMap.of(load_model(spec).module, torch.from_numpy(X), torch.zeros(6))
        u = torch.randn(6, generator=g, dtype=torch.float64)
        y = F.residual(F.w0()) - 1e-5 * u / u.norm()
        return spec, X, y.numpy().reshape(6, 1), 30
    spec = _mlp_spec(3, [16], 2, "erf", "ntk")
    X, _ = _unit_inputs(5, 3, 3)
    F = FlatMap.of(load_model(spec).module, torch.from_numpy(X), torch.zeros(10))
    w0 = F.w0()
    J0 = F.jacobian(w0)
    _, vec = np.linalg.eigh(J0 @ J0.T)
    y = F.residual(w0).numpy() - 3e-3 * vec[:, -1] - 1e-5 * vec[:, 0]
    return spec, X, y.reshape(5, 2), 40


class Case:
    """One problem: its report and the independent reference quantities (computed lazily)."""

    def __init__(self, name: str) -> None:
        self.name = name
        spec, X, y, steps = _problem(name)
        self.spec = spec
        self.spec_bytes = json.dumps(spec).encode()
        buf = io.BytesIO()
        np.savez(buf, X=X, y=y)
        self.npz = buf.getvalue()
        self.options = CertifyOptions(
            budget="fast", validation_steps=steps, batch_sizes=BATCH_SIZES, seed=3
        )
        model = load_model(self.spec_bytes)
        data = load_dataset(self.npz)
        self.report = _certify_function()(model, data, self.options)
        # an independent module instance, rebuilt from the same source bytes
        self.F = FlatMap.of(
            load_model(self.spec_bytes).module, torch.from_numpy(X), torch.from_numpy(y)
        )
        self.w0 = self.F.w0()
        self.n, self.k = y.shape

    @cached_property
    def r0(self) -> np.ndarray:
        return self.F.residual(self.w0).numpy()

    @cached_property
    def J0(self) -> np.ndarray:
        return self.F.jacobian(self.w0)

    @cached_property
    def eig0(self) -> np.ndarray:
        return kernel_eigenvalues(self.J0)

    @cached_property
    def H0(self) -> np.ndarray:
        return self.F.hessians(self.w0)

    @cached_property
    def hessian_norm0(self) -> float:
        return tensor_norm_brute_force(self.H0)

    @cached_property
    def run(self) -> GDRun:
        """GD from w0 with the report's step, switching where the report says it switched."""
        v = self.report.validation
        assert v is not None and v.step_size is not None
        eta0, t_sw, eta1 = v.step_size, v.step_size_switched_at, v.step_size_after_switch

        def step_at(t: int) -> float:
            if t_sw is not None and t >= t_sw:
                assert eta1 is not None
                return eta1
            return eta0

        return run_gd(self.F, self.w0, v.steps, step_at)

    def documented_constants(self) -> tuple[str, float, float, float]:
        """(form, L_F, beta_F, mu) behind the radius and the predictions, as the report documents
        them: 'proven bounds' -> the proven brackets; 'probe estimates' -> the estimates; 'bounds
        with estimated beta' -> ||J0|| + beta_est rho, beta_est, (sqrt(lambda0) - beta_est rho)^2.
        The form is the one named in sgd[].method ("beta_F and mu from '<form>'")."""
        c = self.report.constants
        match = re.search(r"beta_F and mu from '([^']+)'", self.report.sgd[0].method)
        assert match is not None, self.report.sgd[0].method
        form = match.group(1)
        if form == "proven bounds":
            assert c.radius_tier == "rigorous"
            L, b, mu = c.L_F.upper_bound, c.beta_F.upper_bound, c.mu.lower_bound
        elif form == "probe estimates":
            L, b, mu = c.L_F.estimate, c.beta_F.estimate, c.mu.estimate
        else:
            assert form == "bounds with estimated beta", form
            b, rho = c.beta_F.estimate, c.search_radius
            assert b is not None and rho is not None
            lam0, J0 = float(self.eig0[0]), float(math.sqrt(self.eig0[-1]))
            L, mu = J0 + b * rho, (math.sqrt(lam0) - b * rho) ** 2
        assert L is not None and b is not None and mu is not None
        return form, L, b, mu


_CACHE: dict[str, Case] = {}


@pytest.fixture(scope="module", params=CASES)
def case(request: pytest.FixtureRequest) -> Case:
    return _case(str(request.param))


def _case(name: str) -> Case:
    if name not in _CACHE:
        _CACHE[name] = Case(name)
    return _CACHE[name]


# ---------------------------------------------------------------- expected regime of each case


def test_each_problem_lands_in_the_regime_it_was_built_for() -> None:
    lin, tanh, erf = _case("linear").report, _case("tanh").report, _case("erf").report
    assert (lin.verdict, lin.tier, lin.constants.radius_tier) == (
        "certified",
        "rigorous",
        "rigorous",
    )
    assert (tanh.verdict, tanh.tier, tanh.constants.radius_tier) == (
        "certified",
        "rigorous",
        "rigorous",
    )
    assert tanh.constants.beta_F.upper_bound is not None and tanh.constants.beta_F.upper_bound > 0
    assert erf.verdict == "certified" and erf.constants.radius_closes is False
    assert erf.path.certified_from_step is not None and erf.path.certified_from_step > 0
    assert erf.path.tier == "rigorous" and erf.pl_eps is not None


# ---------------------------------------------------------------------------------- problem


def test_problem_counts_match_the_data_and_the_model(case: Case) -> None:
    p = case.report.problem
    assert (p.n_samples, p.n_outputs, p.n_params) == (case.n, case.k, case.F.m)
    assert p.n_constraints == case.n * case.k == case.F.N
    assert p.overparameterization_ratio == pytest.approx(case.F.m / (case.n * case.k), rel=1e-15)


# ---------------------------------------------------------------------------------- initial


def test_initial_loss_and_residual_norm_match_a_direct_forward_pass(case: Case) -> None:
    ini = case.report.initial
    r0 = case.r0
    assert ini.loss == pytest.approx(0.5 * float(r0 @ r0), rel=EXACT)
    assert ini.residual_norm == pytest.approx(float(np.linalg.norm(r0)), rel=EXACT)


def test_initial_kernel_spectrum_matches_eigvalsh_of_the_dense_jacobian(case: Case) -> None:
    ini, ev = case.report.initial, case.eig0
    scale = float(ev[-1])
    assert ini.lambda_min == pytest.approx(float(ev[0]), rel=EXACT, abs=1e-13 * scale)
    assert ini.lambda_max == pytest.approx(float(ev[-1]), rel=EXACT)
    assert ini.condition_number is not None
    assert ini.condition_number == pytest.approx(float(ev[-1] / ev[0]), rel=1e-8)
    np.testing.assert_allclose(ini.spectrum, ev, rtol=EXACT, atol=1e-13 * scale)
    assert ini.jacobian_norm == pytest.approx(spectral_norm(case.J0), rel=EXACT)


def test_initial_hessian_norm_is_a_lower_estimate_of_the_brute_force_sup(case: Case) -> None:
    """One-sided (documented: the power method's value is attained at a feasible (a, u))."""
    value = case.report.initial.hessian_norm
    assert value is not None
    assert value <= case.hessian_norm0 * (1 + 1e-6) + 1e-12


def test_initial_hessian_norm_matches_brute_force_over_the_sphere(
    case: Case,
) -> None:
    value = case.report.initial.hessian_norm
    brute = case.hessian_norm0
    assert value is not None
    if brute == 0.0:
        assert value == pytest.approx(0.0, abs=1e-12)
        return
    assert brute * (1 - 1e-6) <= value <= brute * (1 + 1e-6), (value, brute)


def test_initial_max_output_hessian_norm_matches_dense_output_hessians(case: Case) -> None:
    value = case.report.initial.max_output_hessian_norm
    dense = max_output_hessian_norm(case.H0)
    assert value is not None
    assert value == pytest.approx(dense, rel=1e-6, abs=1e-12), (value, dense)


# -------------------------------------------------------------------------------- constants


def test_constant_brackets_are_ordered_estimate_inside_the_proven_bound(case: Case) -> None:
    c = case.report.constants
    for br in (c.L_F, c.beta_F):
        if br.estimate is not None and br.upper_bound is not None:
            assert br.estimate <= br.upper_bound * (1 + 1e-12), br
    if c.mu.estimate is not None and c.mu.lower_bound is not None:
        assert c.mu.estimate >= c.mu.lower_bound * (1 - 1e-12), c.mu


def test_L_F_and_mu_estimates_are_on_the_right_side_of_the_exact_values_at_w0_one_sided(
    case: Case,
) -> None:
    """One-sided: w0 is in the ball, so sup_B ||J|| >= ||J0|| and inf_B lambda_min(K) <= lambda0;
    the estimates (extremes over points including w0) too."""
    c = case.report.constants
    assert c.L_F.estimate is not None and c.beta_F.estimate is not None
    assert c.mu.estimate is not None
    assert c.L_F.estimate >= spectral_norm(case.J0) * (1 - EXACT)
    assert c.mu.estimate <= float(case.eig0[0]) * (1 + EXACT)


def test_beta_F_estimate_is_at_least_the_brute_force_hessian_norm_at_w0_one_sided(
    case: Case,
) -> None:
    """One-sided: sup_B ||H_F|| >= ||H_F(w0)|| (w0 is in the ball)."""
    beta = case.report.constants.beta_F.estimate
    assert beta is not None and beta >= case.hessian_norm0 * (1 - 1e-6), (beta, case.hessian_norm0)


def test_probe_records_lie_in_the_ball_and_give_the_estimates(case: Case) -> None:
    r, c = case.report, case.report.constants
    assert r.probes and c.search_radius is not None
    lam0, J0 = float(case.eig0[0]), spectral_norm(case.J0)
    assert max(p.distance for p in r.probes) <= c.search_radius * (1 + 1e-9)
    assert c.L_F.estimate == pytest.approx(
        max([J0] + [p.jacobian_norm for p in r.probes]), rel=EXACT
    )
    assert c.mu.estimate == pytest.approx(min([lam0] + [p.lambda_min for p in r.probes]), rel=EXACT)
    for p in r.probes:
        if c.mu.lower_bound is not None:
            assert p.lambda_min >= c.mu.lower_bound * (1 - 1e-12)
        if c.L_F.upper_bound is not None:
            assert p.jacobian_norm <= c.L_F.upper_bound * (1 + 1e-12)
        if c.beta_F.upper_bound is not None and p.hessian_norm is not None:
            assert p.hessian_norm <= c.beta_F.upper_bound * (1 + 1e-12)


def test_proven_mu_and_L_F_bounds_are_the_weyl_forms_of_the_report_numbers(case: Case) -> None:
    c, ini = case.report.constants, case.report.initial
    if c.beta_F.upper_bound is None:
        assert c.mu.lower_bound is None and c.L_F.upper_bound is None
        return
    beta, rho = c.beta_F.upper_bound, c.search_radius
    assert rho is not None and c.mu.lower_bound is not None and c.L_F.upper_bound is not None
    # the proven forms use the floating-point bounds of lambda0 and ||J0|| (docs/theory.md 15)
    lam_lb, J_ub = ini.lambda_min_lower, ini.jacobian_norm_upper
    assert lam_lb is not None and J_ub is not None
    assert lam_lb <= ini.lambda_min and lam_lb >= ini.lambda_min * (1 - 1e-8)
    assert J_ub >= ini.jacobian_norm and J_ub <= ini.jacobian_norm * (1 + 1e-8)
    s = math.sqrt(lam_lb) - beta * rho
    assert c.mu.lower_bound == pytest.approx(max(s, 0.0) ** 2, rel=1e-12, abs=1e-300)
    # L_F <= ||J0|| + beta rho; the report may take the smaller analytic Jacobian bound
    assert c.L_F.upper_bound <= (J_ub + beta * rho) * (1 + 1e-12)
    assert c.L_F.upper_bound >= ini.jacobian_norm * (1 - 1e-12)


def test_proven_bounds_hold_at_random_points_of_the_search_ball(case: Case) -> None:
    """lambda_min(K(w)) >= mu.lower_bound, ||J(w)|| <= L_F.upper_bound and max_i ||Hess F_i(w)||
    (a lower bound of ||H_F(w)||) <= beta_F.upper_bound at random w in B(w0, rho)."""
    c = case.report.constants
    if c.beta_F.upper_bound is None:
        pytest.skip(f"{case.name}: no proven bounds on the search ball")
    assert c.search_radius is not None and c.mu.lower_bound is not None
    assert c.L_F.upper_bound is not None
    gen = torch.Generator().manual_seed(11)
    for w in ball_points(case.w0, c.search_radius, 4, gen):
        J = case.F.jacobian(w)
        assert float(kernel_eigenvalues(J)[0]) >= c.mu.lower_bound * (1 - 1e-9)
        assert spectral_norm(J) <= c.L_F.upper_bound * (1 + 1e-9)
        assert max_output_hessian_norm(case.F.hessians(w)) <= c.beta_F.upper_bound * (1 + 1e-9)


def test_radius_is_2_L_F_r0_over_mu_with_the_documented_constants(case: Case) -> None:
    c = case.report.constants
    form, L, _, mu = case.documented_constants()
    assert c.radius is not None and c.search_radius is not None
    r0n = float(np.linalg.norm(case.r0))
    if form == "proven bounds":  # the exact ||r0|| from above: + rounding of F (theory 15)
        r_up = case.report.initial.residual_norm_upper
        assert r_up is not None and r0n <= r_up <= r0n * (1 + 1e-6)
        r0n = r_up
    assert c.radius == pytest.approx(2.0 * L * r0n / mu, rel=EXACT)
    assert c.radius_closes == (c.radius <= c.search_radius)
    assert c.radius_tier == ("rigorous" if form == "proven bounds" else c.radius_tier)
    assert c.mu_unnormalized == pytest.approx(2.0 * mu, rel=1e-14)


# --------------------------------------------------------------------------------------- gd


def test_gd_step_rate_kappa_and_iterations_follow_the_theorem(case: Case) -> None:
    gd = case.report.gd
    _, L, beta, mu = case.documented_constants()
    r0n = float(np.linalg.norm(case.r0))
    L0 = 0.5 * r0n**2
    eta = 1.0 / (L * L + beta * r0n)
    assert gd.step_size == pytest.approx(eta, rel=EXACT)
    assert gd.step_size_mse_mean == pytest.approx(case.n * eta / 2.0, rel=EXACT)
    assert gd.kappa == pytest.approx(1.0 / (eta * mu), rel=EXACT)
    assert gd.rate == pytest.approx(1.0 - eta * mu, rel=1e-12)
    assert gd.target_loss == pytest.approx(1e-6 * L0, rel=EXACT)
    expect = math.ceil(math.log(L0 / (1e-6 * L0)) / -math.log1p(-eta * mu))
    assert gd.iterations_to_target == expect


# -------------------------------------------------------------------------------------- sgd


def test_sgd_predictions_follow_the_section_6_formulas(case: Case) -> None:
    r = case.report
    _, _, _, mu = case.documented_constants()
    L0, n = r.initial.loss, case.n
    assert [s.batch_size for s in r.sgd] == BATCH_SIZES
    for s in r.sgd:
        beta, b = s.smoothness, s.batch_size
        assert beta is not None and s.step_size is not None and s.rate is not None
        eta = mu / (beta * (n * beta + mu * (b - 1)))
        assert s.step_size == pytest.approx(eta, rel=EXACT)
        assert s.rate == pytest.approx(1.0 - mu * b * eta / n, rel=1e-14)
        delta = 1.0 - s.confidence
        assert s.confidence == pytest.approx(case.options.sgd_confidence)
        assert s.radius == pytest.approx(2 * n * math.sqrt(2 * beta * L0) / (mu * delta), rel=EXACT)
        assert s.step_size_mse_mean == pytest.approx(b * eta / 2.0, rel=EXACT)
        assert r.gd.target_loss is not None
        expect = math.ceil(math.log(L0 / r.gd.target_loss) / -math.log1p(-mu * b * eta / n))
        assert s.iterations_to_target is not None
        assert abs(s.iterations_to_target - expect) <= 1, (s.iterations_to_target, expect)


def test_sgd_smoothness_is_the_documented_per_sample_bound(case: Case) -> None:
    """beta = max_i (||J_i(w0)||^2 + ||r_i(w0)|| beta_F) with J_i sample i's k x m block."""
    _, _, beta_F, _ = case.documented_constants()
    J, r = case.J0.reshape(case.n, case.k, -1), case.r0.reshape(case.n, case.k)
    expect = max(
        spectral_norm(J[i]) ** 2 + float(np.linalg.norm(r[i])) * beta_F for i in range(case.n)
    )
    for s in case.report.sgd:
        assert s.smoothness == pytest.approx(expect, rel=EXACT)


def test_sgd_smoothness_bounds_the_dense_per_sample_hessian_at_w0_one_sided(case: Case) -> None:
    """Hess l_i = J_i^T J_i + sum_c r_ic Hess f_ic; its norm at w0 is <= the smoothness used."""
    J, r = case.J0.reshape(case.n, case.k, -1), case.r0.reshape(case.n, case.k)
    H = case.H0.reshape(case.n, case.k, case.F.m, case.F.m)
    worst = 0.0
    for i in range(case.n):
        h = J[i].T @ J[i] + np.tensordot(r[i], H[i], axes=1)
        worst = max(worst, float(np.abs(np.linalg.eigvalsh(h)).max()))
    for s in case.report.sgd:
        assert s.smoothness is not None and worst <= s.smoothness * (1 + 1e-9)


# ------------------------------------------------------------------------------- validation


def test_validation_series_match_an_independent_gd_run(case: Case) -> None:
    v, run = case.report.validation, case.run
    assert v is not None and v.steps == case.options.validation_steps
    assert v.step_size == case.report.gd.step_size
    idx = np.array(v.recorded_steps)
    np.testing.assert_array_equal(idx, np.arange(v.steps + 1))
    np.testing.assert_allclose(v.losses, run.losses[idx], rtol=EXACT, atol=0)
    np.testing.assert_allclose(v.distances, run.distances[idx], rtol=EXACT, atol=1e-15)
    ratios = np.array([np.nan if x is None else x for x in v.pl_ratios])
    np.testing.assert_allclose(ratios, run.pl_ratios[idx], rtol=1e-8)
    assert v.min_pl_ratio == pytest.approx(float(np.nanmin(run.pl_ratios)), rel=1e-8)
    assert v.max_distance_from_init == pytest.approx(float(run.distances.max()), rel=EXACT)


def test_validation_bound_held_is_recomputed_from_the_independent_run(case: Case) -> None:
    r, v, run = case.report, case.report.validation, case.run
    assert v is not None
    if not r.constants.radius_closes:
        assert v.bound_held is None and v.first_violation_step is None and v.radius is None
        return
    assert r.gd.rate is not None
    floor = 0.5 * (1e-13 * (float(case.F.y.norm()) + float(case.F(case.w0).norm()))) ** 2
    t = np.arange(len(run.losses))
    held = bool(np.all(run.losses <= run.losses[0] * r.gd.rate**t * (1 + 1e-12) + floor))
    assert v.bound_held is held
    assert held, "a certificate closed at w0 must hold on the independent run"
    assert v.radius == r.constants.radius
    assert r.constants.radius is not None
    assert float(run.distances.max()) <= r.constants.radius


# ------------------------------------------------------------------------- at_init and path


def test_residual_threshold_is_the_max_of_g_on_a_dense_grid(case: Case) -> None:
    a, ini = case.report.at_init, case.report.initial
    assert a is not None and a.beta is not None
    lam0, J0 = float(case.eig0[0]), spectral_norm(case.J0)
    if a.beta == 0.0:
        assert a.residual_threshold is None and case.report.path.residual_threshold is None
        assert a.factor == 0.0
        return
    grid = residual_threshold_grid(lam0, J0, a.beta)
    assert a.residual_threshold is not None
    assert grid * (1 - 1e-6) <= a.residual_threshold <= grid * (1 + 1e-9)
    assert case.report.path.residual_threshold == a.residual_threshold
    # a proven beta goes with the floating-point upper bound of the exact ||r0|| (theory 15)
    r_doc = ini.residual_norm_upper if a.beta_kind == "proven" else ini.residual_norm
    assert r_doc is not None and a.residual_norm == r_doc
    assert a.factor == pytest.approx(r_doc / a.residual_threshold, rel=1e-12)
    if case.report.constants.radius_tier == "rigorous":
        assert ini.residual_norm <= a.residual_threshold, "closed with proven beta, so r0 <= r*"


def test_at_init_radii_follow_their_formulas(case: Case) -> None:
    a, c, ini = case.report.at_init, case.report.constants, case.report.initial
    assert a is not None and a.beta is not None
    lam0, J0 = float(case.eig0[0]), spectral_norm(case.J0)
    r0n = float(np.linalg.norm(case.r0))
    # with a proven beta: the upper bound of the exact ||r0|| (+ E_r, docs/theory.md 15)
    assert a.residual_norm == pytest.approx(r0n, rel=1e-6 if a.beta_kind == "proven" else EXACT)
    assert a.residual_norm >= r0n or a.beta_kind != "proven"
    assert a.required_radius == pytest.approx(2 * J0 * r0n / lam0, rel=1e-8)
    if a.beta > 0:
        assert a.allowed_radius == pytest.approx(math.sqrt(lam0) / a.beta, rel=1e-8)
    else:
        assert a.allowed_radius is None
    if a.beta_kind == "proven" and a.beta > 0:
        assert c.beta_F.estimate is not None and ini.hessian_norm is not None
        beta_est = max(ini.hessian_norm, c.beta_F.estimate)
        assert a.beta >= beta_est, "a proven bound below an observed Hessian norm is wrong"
        grid = residual_threshold_grid(lam0, J0, beta_est)
        assert a.estimated_residual_threshold is not None
        assert grid * (1 - 1e-6) <= a.estimated_residual_threshold <= grid * (1 + 1e-9)
        assert a.estimated_factor == pytest.approx(
            a.residual_norm / a.estimated_residual_threshold, rel=1e-12
        )


def test_proven_at_init_beta_bounds_the_dense_hessian_norm_at_w0(case: Case) -> None:
    a = case.report.at_init
    assert a is not None and a.beta is not None
    if a.beta_kind == "proven":
        assert case.hessian_norm0 <= a.beta * (1 + 1e-9)


def test_path_certificate_is_consistent_with_the_independent_run(case: Case) -> None:
    """At t*: ||r_t*|| (independent run) = residual_at_step <= r*(w_t*); lambda_min and ||J||
    at w_t* from the dense Jacobian; mu, L_F, R, step and rate from the documented formulas;
    bound_held_after recomputed; the run switched to the certified step at t*."""
    r, p = case.report, case.report.path
    t = p.certified_from_step
    if t is None or t == 0:
        assert t == (0 if r.constants.radius_closes else None)
        return
    run, v = case.run, r.validation
    assert v is not None
    if v.step_size_switched_at is None:  # the run's step was already within the certified one
        assert p.step_size == v.step_size
    else:
        assert v.step_size_switched_at == t and v.step_size_after_switch == p.step_size
    w = run.weights[t]
    J = case.F.jacobian(w)
    lam, Jn = float(kernel_eigenvalues(J)[0]), spectral_norm(J)
    assert p.residual_at_step == pytest.approx(run.residual_norms[t], rel=1e-8)
    assert p.lambda_min_at_step == pytest.approx(lam, rel=1e-8)
    assert p.jacobian_norm_at_step == pytest.approx(Jn, rel=EXACT)
    beta, rho, rn = p.beta, p.ball_radius, run.residual_norms[t]
    assert beta is not None and rho is not None and p.residual_threshold_at_step is not None
    # the constrained r*: the max of g' over the balls the beta holds on, rho <= ball_radius (the
    # ball is the cap when the cap binds, else the unconstrained maximiser)
    grid = path_threshold_grid(lam, beta, rho_cap=rho * (1 + 1e-12))
    assert grid * (1 - 1e-6) <= p.residual_threshold_at_step <= grid * (1 + 1e-9)
    assert p.residual_threshold_at_step <= path_threshold_grid(lam, beta) * (1 + 1e-9)
    # never below the paper form's threshold (section 18: 2 ||r|| / sqrt(mu) <= 2 L_F ||r|| / mu)
    assert residual_threshold_grid(lam, Jn, beta, rho_cap=rho) <= grid * (1 + 1e-9)
    assert rn <= p.residual_threshold_at_step
    assert rn <= float(path_gap(rho, lam, beta)) * (1 + 1e-9), "the certificate must close at rho"
    mu = (math.sqrt(lam) - beta * rho) ** 2
    L = Jn + beta * rho
    eta = min(1.0 / (L * L + beta * rn), v.step_size)
    assert p.mu == pytest.approx(mu, rel=1e-8)
    assert p.radius == pytest.approx(2 * rn / math.sqrt(mu), rel=1e-8)
    assert p.radius is not None and p.radius <= rho * (1 + 1e-9)
    assert p.step_size == pytest.approx(eta, rel=1e-8)
    assert p.rate == pytest.approx(1 - eta * mu, rel=1e-12)
    assert p.rate is not None
    floor = 0.5 * (1e-13 * (float(case.F.y.norm()) + float(case.F(case.w0).norm()))) ** 2
    tail = run.losses[t:]
    held = bool(np.all(tail <= tail[0] * p.rate ** np.arange(len(tail)) * (1 + 1e-12) + floor))
    dist = max(float((wt - w).norm()) for wt in run.weights[t:])
    held = held and dist <= p.radius * (1 + 1e-9)
    assert p.bound_held_after is held and held


def test_proven_path_bounds_hold_at_random_points_around_the_certified_iterate(case: Case) -> None:
    p = case.report.path
    t = p.certified_from_step
    if t is None or t == 0 or p.tier != "rigorous":
        pytest.skip(f"{case.name}: no rigorous path certificate at t* > 0")
    assert p.ball_radius is not None and p.mu is not None and p.beta is not None
    assert p.jacobian_norm_at_step is not None
    L = p.jacobian_norm_at_step + p.beta * p.ball_radius
    gen = torch.Generator().manual_seed(12)
    for w in ball_points(case.run.weights[t], p.ball_radius, 4, gen):
        J = case.F.jacobian(w)
        assert float(kernel_eigenvalues(J)[0]) >= p.mu * (1 - 1e-9)
        assert spectral_norm(J) <= L * (1 + 1e-9)
        assert max_output_hessian_norm(case.F.hessians(w)) <= p.beta * (1 + 1e-9)


def test_at_init_factor_and_pl_eps_follow_their_formulas(case: Case) -> None:
    """PL*_eps (docs/theory.md section 10) at the reported rho with the documented beta:
    mu = (sqrt(lambda0) - beta rho)^2, L = ||J0|| + beta rho, eta = 1/(L^2 + beta ||r0||),
    q = 1 - eta mu, T = floor(ln(1 - x) / ln sqrt(q)), x = rho (1 - sqrt q) / (eta L ||r0||),
    eps = q^T L0; and T steps of an independent GD run with eta stay in the ball and end below
    eps."""
    r, e = case.report, case.report.pl_eps
    if e is None:
        assert r.constants.radius_closes
        return
    a, c, ini = r.at_init, r.constants, r.initial
    assert a is not None and a.beta is not None and e.radius is not None
    if e.tier == "rigorous":
        assert a.beta_kind == "proven"
        beta = a.beta
    elif a.beta_kind == "estimated":
        beta = a.beta
    else:
        assert ini.hessian_norm is not None and c.beta_F.estimate is not None
        beta = max(ini.hessian_norm, c.beta_F.estimate)
    lam0, J0 = float(case.eig0[0]), spectral_norm(case.J0)
    r0n = float(np.linalg.norm(case.r0))
    L0, rho = 0.5 * r0n**2, e.radius
    mu = (math.sqrt(lam0) - beta * rho) ** 2
    L = J0 + beta * rho
    eta = 1.0 / (L * L + beta * r0n)
    q = 1.0 - eta * mu
    x = rho * (1 - math.sqrt(q)) / (eta * L * r0n)
    T = math.floor(math.log1p(-x) / math.log(math.sqrt(q)))
    assert e.mu == pytest.approx(mu, rel=1e-8)
    assert e.step_size == pytest.approx(eta, rel=1e-8)
    assert e.rate == pytest.approx(q, rel=1e-12)
    assert e.iterations == T
    assert e.eps == pytest.approx(q**T * L0, rel=1e-7)
    path_bound = eta * L * r0n * (1 - q ** (T / 2)) / (1 - math.sqrt(q))
    assert path_bound <= rho * (1 + 1e-9)
    run = run_gd(case.F, case.w0, T, lambda _: eta)
    assert float(run.distances.max()) <= rho
    assert e.eps is not None and run.losses[-1] <= e.eps * (1 + 1e-9)
    assert np.all(run.losses <= L0 * q ** np.arange(T + 1) * (1 + 1e-9))


# ------------------------------------------------------------------------------- provenance


def test_provenance_hashes_the_sources_and_records_seed_and_device(case: Case) -> None:
    p = case.report.provenance
    canonical = json.dumps(case.spec, sort_keys=True, separators=(",", ":")).encode()
    assert p.model_sha256 == hashlib.sha256(canonical).hexdigest()
    assert p.data_sha256 == hashlib.sha256(case.npz).hexdigest()
    assert p.seed == case.options.seed == 3
    assert p.device == "cpu"
    assert p.budget == "fast"
    assert p.elapsed_s > 0
