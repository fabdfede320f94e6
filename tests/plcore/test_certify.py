"""Acceptance tests of certify(): linear models (exact), under-parameterized models, wide tanh
networks (path certificate), and the report's invariants. Every certified case is re-checked by
an independent GD loop (tests/plcore/certify_cases.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from plcore.certification import certify
from plcore.errors import Cancelled, ShapeMismatchError
from plcore.options import CertifyOptions
from tests.plcore.certify_cases import (
    dataset,
    gaussian_data,
    independent_gd_check,
    linear_spec,
    mlp,
    ntk_tanh_spec,
    unit_sphere_data,
)

FAST = CertifyOptions(budget="fast")


def _no_inf_nan(report_json: str) -> None:
    def refuse(name: str) -> float:
        raise AssertionError(f"JSON contains {name}")

    json.loads(report_json, parse_constant=refuse)


def test_linear_model_is_certified_rigorously_with_exact_constants() -> None:
    n, d = 8, 20
    data = gaussian_data(n, d, seed=1)
    model = mlp(linear_spec(d))
    report = certify(model, data, FAST)
    X = data.X.numpy()
    lam = float(np.linalg.eigvalsh(X @ X.T)[0])
    normX = float(np.linalg.norm(X, 2))
    assert report.verdict == "certified" and report.tier == "rigorous"
    c = report.constants
    assert c.beta_F.upper_bound == 0.0
    assert c.mu.lower_bound == pytest.approx(lam, rel=1e-10)
    assert c.L_F.upper_bound == pytest.approx(normX, rel=1e-12)
    assert report.gd.step_size == pytest.approx(1.0 / normX**2, rel=1e-12)
    L0 = report.initial.loss
    eps = report.gd.target_loss
    assert eps is not None and eps == pytest.approx(1e-6 * L0)
    assert report.gd.iterations_to_target == math.ceil(
        math.log(L0 / eps) / -math.log(1 - lam / normX**2)
    )
    assert report.validation is not None and report.validation.bound_held is True
    assert report.at_init is not None and report.at_init.closes
    assert report.path.certified_from_step == 0
    independent_gd_check(report, model, data, tail_steps=200)
    _no_inf_nan(report.model_dump_json())


def test_under_parameterized_model_is_not_certified_with_the_reason() -> None:
    data = gaussian_data(8, 3)
    report = certify(mlp(linear_spec(3)), data, FAST)
    assert report.verdict == "not_certified" and report.tier == "rigorous"
    assert report.reasons[0].startswith(
        "under-parameterized: N = n*k = 8*1 = 8 constraints > m = 3 parameters, so rank K <= m < N"
    )
    assert report.initial.lambda_min == pytest.approx(0.0, abs=1e-10)
    _no_inf_nan(report.model_dump_json())


def test_duplicate_inputs_are_not_certified_with_the_cause() -> None:
    data = gaussian_data(6, 4, seed=2)
    X = data.X.clone()
    X[5] = X[0]
    report = certify(mlp(ntk_tanh_spec(32, d=4)), dataset(X, data.y), FAST)
    assert report.verdict == "not_certified"
    assert "duplicate inputs" in report.reasons[0]
    assert "numerically zero" in report.reasons[0]


def test_small_tanh_network_gets_a_path_certificate_that_independent_gd_confirms() -> None:
    data = unit_sphere_data(n=8, d=16)
    model = mlp(ntk_tanh_spec(256, d=16))
    report = certify(model, data, CertifyOptions(budget="fast", validation_steps=250))
    assert report.at_init is not None and not report.at_init.closes
    assert report.at_init.factor is not None and report.at_init.factor > 1
    assert "does not apply at w0" in report.reasons[0] and "by a factor" in report.reasons[0]
    assert report.verdict == "certified", report.reasons
    t_star = report.path.certified_from_step
    assert t_star is not None and 0 < t_star <= 250
    assert report.path.residual_at_step is not None
    assert report.path.residual_threshold_at_step is not None
    assert report.path.residual_at_step <= report.path.residual_threshold_at_step
    assert report.path.bound_held_after is True
    assert f"step {t_star} of the checking run" in report.reasons[1]
    independent_gd_check(report, model, data)
    _no_inf_nan(report.model_dump_json())


def test_report_sections_and_conventions_are_filled() -> None:
    data = unit_sphere_data(n=6, d=8)
    opts = CertifyOptions(
        budget="fast", validation_steps=40, batch_sizes=[2], learning_rate=0.5, validate_sgd=True
    )
    report = certify(mlp(ntk_tanh_spec(64, d=8)), data, opts)
    assert report.problem.n_constraints == 6 and report.problem.n_params == 8 * 64 + 64 + 64 + 1
    assert report.conventions["pl_star"].startswith("1/2-normalized")
    assert report.conventions["step_size_mse"] == (
        "eta_mse = n eta / 2 for MSE = (1/n) sum_i ||f(x_i) - y_i||^2 = (2/n) L "
        "(mean over samples, summed over the k outputs)"
    )
    assert report.gd.step_size is not None
    assert report.gd.step_size_mse_mean == pytest.approx(6 * report.gd.step_size / 2)
    assert report.gd.planned_learning_rate is not None
    assert report.sgd and report.sgd[0].derived and report.sgd[0].batch_size == 2
    assert report.validation is not None and report.validation.sgd_losses is not None
    assert len(report.validation.losses) == 41 and report.validation.recorded_steps[-1] == 40
    assert report.probes and report.probes[0].source == "center"
    assert len(report.initial.spectrum) == 6
    assert report.provenance.budget == "fast" and report.provenance.data_sha256 == data.sha256
    assert set(report.provenance.versions) == {"plcert", "torch", "numpy", "python"}
    _no_inf_nan(report.model_dump_json())


def test_progress_is_monotone_and_cancellation_stops_the_run() -> None:
    data = unit_sphere_data(n=4, d=4)
    model = mlp(ntk_tanh_spec(16, d=4))
    seen: list[tuple[float, str]] = []
    certify(
        model,
        data,
        CertifyOptions(budget="fast", validation_steps=20),
        on_progress=lambda f, s: seen.append((f, s)),
    )
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.99
    assert {"initial quantities", "checking run", "report"} <= {s.split(":")[0] for _, s in seen}
    calls = [0]

    def cancel_later() -> bool:
        calls[0] += 1
        return calls[0] > 5

    with pytest.raises(Cancelled, match="cancellation requested"):
        certify(
            model,
            data,
            CertifyOptions(budget="fast", validation_steps=20),
            should_cancel=cancel_later,
        )


def test_data_that_does_not_fit_is_refused() -> None:
    data = gaussian_data(4, 5)
    with pytest.raises(ShapeMismatchError, match="per-sample shape"):
        certify(mlp(linear_spec(3)), data, FAST)


def test_caller_model_is_left_untouched() -> None:
    data = gaussian_data(4, 10)
    model = mlp(linear_spec(10))
    w = model.flat_params().clone()
    certify(model, data, CertifyOptions(budget="fast", validation_steps=10))
    torch.testing.assert_close(model.flat_params(), w, rtol=0, atol=0)


@pytest.mark.slow
def test_wide_tanh_network_width_4096_path_certificate_and_width_extrapolation() -> None:
    data = unit_sphere_data()
    model = mlp(ntk_tanh_spec(4096))
    report = certify(model, data, CertifyOptions(budget="fast", validation_steps=300))
    assert report.at_init is not None and not report.at_init.closes
    assert "by a factor" in report.reasons[0]
    assert report.verdict == "certified", report.reasons
    assert report.path.certified_from_step is not None
    assert report.path.bound_held_after is True
    independent_gd_check(report, model, data)
    w = report.width_extrapolation
    assert w is not None and w.slope is not None and w.slope < 0
    assert w.width_to_close is not None and w.width_to_close > 4096
