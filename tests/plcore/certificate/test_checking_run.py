"""The checking run: GD records, bound checks, downsampling, the step switch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plcore.certificate.checking_run import (
    RunRecord,
    bound_violations,
    downsample_indices,
    gd_run,
    validation_section,
)
from tests.plcore.certify_cases import gaussian_data, linear_spec, mlp


def _linear_run(steps: int, hook=None):  # type: ignore[no-untyped-def]
    data = gaussian_data(5, 12, seed=4)
    model = mlp(linear_spec(12))
    X = data.X
    eta = 1.0 / float(torch.linalg.matrix_norm(X, 2)) ** 2
    rec = gd_run(
        model, X, data.y.reshape(-1), model.flat_params(), step_size=eta, steps=steps, hook=hook
    )
    return rec, X.numpy(), data.y.numpy().reshape(-1), eta, model.flat_params().numpy()


def test_gd_run_matches_closed_form_linear_gd() -> None:
    rec, X, y, eta, w0 = _linear_run(30)
    w = w0.copy()
    for t in range(31):
        r = X @ w - y
        assert rec.losses[t] == pytest.approx(0.5 * r @ r, rel=1e-12)
        assert rec.distances[t] == pytest.approx(np.linalg.norm(w - w0), abs=1e-12)
        g = X.T @ r
        assert rec.pl_ratios[t] == pytest.approx((g @ g) / (r @ r), rel=1e-10)
        w = w - eta * g


def test_pl_ratio_never_below_lambda_min() -> None:
    rec, X, *_ = _linear_run(30)
    lam = np.linalg.eigvalsh(X @ X.T)[0]
    assert rec.pl_ratios.min() >= lam * (1 - 1e-10)


def test_a_later_step_switch_replaces_an_earlier_one() -> None:
    # an estimated path closure switches the step, a later rigorous one switches it again
    calls: list[int] = []

    def hook(t, w, r, g):  # type: ignore[no-untyped-def]
        calls.append(t)
        return {3: 1e-2, 5: 1e-3}.get(t)

    rec, *_ = _linear_run(10, hook)
    assert calls == list(range(11))
    assert rec.switched_at == 5 and rec.step_size_after == 1e-3


def test_bound_violations_respect_tolerance_and_start() -> None:
    losses = np.array([1.0, 0.5, 0.3, 0.2])
    assert bound_violations(losses, 1.0, 0.5, 0.0).tolist() == [2, 3]
    assert bound_violations(losses, 1.0, 0.7, 0.0).size == 0
    assert bound_violations(losses, 0.5, 0.5, 0.0, start=1).tolist() == [2, 3]
    assert bound_violations(losses, 1.0, 0.5, 0.1).size == 0


def test_downsampling_keeps_first_and_last() -> None:
    idx = downsample_indices(10_001, 2000)
    assert len(idx) <= 2000 and idx[0] == 0 and idx[-1] == 10_000
    assert np.all(np.diff(idx) > 0)
    assert downsample_indices(5).tolist() == [0, 1, 2, 3, 4]


def test_validation_marks_violation_only_when_applicable() -> None:
    rec = RunRecord(
        0.1, np.array([1.0, 0.9, 0.95]), np.zeros(3), np.ones(3), np.array([1.0, np.nan, 1.0]), 0.0
    )
    v = validation_section(rec, rate=0.9, radius=1.0, applicable=True)
    assert v.bound_held is False and v.first_violation_step == 2
    assert v.pl_ratios[1] is None and v.min_pl_ratio == 1.0
    assert validation_section(rec, rate=0.9, radius=None, applicable=False).bound_held is None
