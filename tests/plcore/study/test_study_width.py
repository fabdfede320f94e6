"""Acceptance of issue 12: the width study of an NTK tanh MLP.

Measured (docs/theory.md, "Width study"): 16 points in R^8, widths 64, 256, 1024, two seeds,
budget fast: over five data seeds the linear-output slope was -0.40 to -0.47 and the
tanh-output slope -0.03 to +0.01; a study of 6 points takes 8-10 s on one core.
"""

from __future__ import annotations

import json

import pytest

from plcore import CertifyOptions, study_width
from plcore.dataset import Dataset
from plcore.errors import Cancelled, ModelSpecError, OptionsError
from plcore.report.study_schema import StudyResult
from plcore.study import study_depth, study_point
from tests.plcore.study.conftest import tanh_mlp

WIDTHS = [64, 256, 1024]
FAST = CertifyOptions(budget="fast")


@pytest.fixture(scope="package")
def linear_study(sphere16: Dataset) -> StudyResult:
    """Certify mode: every point a full certification (about 10 s)."""
    return study_width(tanh_mlp(), sphere16, WIDTHS, seeds=[0, 1], options=FAST)


@pytest.fixture(scope="module")
def tanh_output_study(sphere16: Dataset) -> StudyResult:
    """Quantities mode: the Hessian norm is certify's (same solver, settings and seed)."""
    return study_width(
        tanh_mlp(output_activation="tanh"),
        sphere16,
        WIDTHS,
        seeds=[0, 1],
        options=FAST,
        mode="quantities",
    )


def test_linear_output_hessian_norm_slope_is_near_minus_one_half(
    linear_study: StudyResult,
) -> None:
    s = linear_study.hessian_norm_slope
    assert s.estimate is not None and -0.65 <= s.estimate <= -0.35, s
    assert s.ci_low is not None and s.ci_high is not None
    assert s.ci_low < s.estimate < s.ci_high
    assert s.n_points == 6 and linear_study.expected_slope == -0.5
    assert "expected slope -0.5" in linear_study.reasons[0]


def test_tanh_output_slope_is_near_zero_and_the_reasons_say_why(
    tanh_output_study: StudyResult,
) -> None:
    s = tanh_output_study.hessian_norm_slope
    assert s.estimate is not None and -0.2 <= s.estimate <= 0.2, s
    assert tanh_output_study.expected_slope == 0.0
    why = tanh_output_study.reasons[0]
    assert "output activation tanh" in why
    assert "tanh''(g) grad g grad g^T" in why and "does not shrink with width" in why
    assert all(r.verdict is None and r.mu is None for r in tanh_output_study.rows)


def test_kernel_drift_decreases_with_width(linear_study: StudyResult) -> None:
    assert linear_study.kernel_drift_decreasing is True
    drift = linear_study.kernel_drift_slope
    assert drift is not None and drift.ci_high is not None and drift.ci_high < 0
    means = {
        w: sum(r.kernel_drift or 0.0 for r in linear_study.rows if r.width == w) / 2 for w in WIDTHS
    }
    assert means[64] > means[256] > means[1024] > 0


def test_rows_carry_the_report_numbers_and_the_replayed_run(linear_study: StudyResult) -> None:
    rows = linear_study.rows
    assert [(r.width, r.seed) for r in rows] == [(w, s) for w in WIDTHS for s in (0, 1)]
    for r in rows:
        assert r.verdict is not None and r.tier is not None
        assert r.lambda_min > 0 and r.lambda_max >= r.lambda_min
        assert r.hessian_norm is not None and r.hessian_norm > 0
        assert r.drift_steps == 200 and r.final_loss is not None
        assert r.final_loss < r.initial_loss
        assert r.notes == []  # the replay ended where the report's checking run did
        assert r.n_params == r.width * (8 + 2) + 1
    assert linear_study.lambda_min_infinite_width is None  # no closed form for tanh
    assert "tanh" in linear_study.infinite_width_method


def test_json_has_the_contract_fields(linear_study: StudyResult) -> None:
    doc = json.loads(linear_study.model_dump_json())
    assert set(doc["hessian_norm_slope"]) >= {"estimate", "ci_low", "ci_high"}
    assert len(doc["rows"]) == 6 and doc["kind"] == "width" and doc["widths"] == WIDTHS
    assert StudyResult.model_validate(doc) == linear_study


def test_quantities_mode_computes_the_same_hessian_norm_as_certify(sphere16: Dataset) -> None:
    spec = tanh_mlp()
    full = study_point(spec, sphere16, width=32, seed=0, options=FAST)
    light = study_point(spec, sphere16, width=32, seed=0, options=FAST, mode="quantities")
    assert light.hessian_norm == full.hessian_norm
    assert light.lambda_min == pytest.approx(full.lambda_min, rel=1e-10)
    assert light.verdict is None and full.verdict is not None


def test_lambda0_approaches_the_infinite_width_value_for_erf(sphere16: Dataset) -> None:
    spec = {**tanh_mlp(), "activation": "erf"}
    res = study_width(
        spec,
        sphere16,
        [32, 2048],
        seeds=[0, 1],
        options=CertifyOptions(budget="fast", validation_steps=2),
        mode="quantities",
    )
    lam_inf = res.lambda_min_infinite_width
    assert lam_inf is not None and lam_inf > 0 and "closed-form" in res.infinite_width_method
    err = {
        w: max(abs(r.lambda_min - lam_inf) for r in res.rows if r.width == w) for w in (32, 2048)
    }
    assert err[2048] < err[32]
    assert err[2048] < 0.1 * lam_inf
    assert all(r.lambda_min_infinite_width == lam_inf for r in res.rows)


def test_progress_is_monotone_per_point_and_cancellation_stops_the_study(
    sphere16: Dataset,
) -> None:
    seen: list[tuple[float, str]] = []

    def cancel_in_second_point() -> bool:
        return any(stage.startswith("width 16, seed 0") for _, stage in seen)

    with pytest.raises(Cancelled):
        study_width(
            tanh_mlp(),
            sphere16,
            [8, 16],
            options=CertifyOptions(budget="fast", validation_steps=2),
            mode="quantities",
            on_progress=lambda f, s: seen.append((f, s)),
            should_cancel=cancel_in_second_point,
        )
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert seen[0][1].startswith("width 8, seed 0")
    assert 0.5 <= fractions[-1] < 1.0


def test_depth_study_varies_the_number_of_hidden_layers(sphere16: Dataset) -> None:
    res = study_depth(
        tanh_mlp(),
        sphere16,
        [1, 2],
        width=16,
        options=CertifyOptions(budget="fast", validation_steps=2),
        mode="quantities",
    )
    assert res.kind == "depth" and res.depths == [1, 2] and res.widths == [16]
    assert [(r.width, r.depth) for r in res.rows] == [(16, 1), (16, 2)]
    assert res.rows[1].n_params == res.rows[0].n_params + 16 * 17
    assert res.expected_slope is None and res.reasons[0].startswith("depth study")


@pytest.mark.parametrize(
    ("spec", "widths", "error", "match"),
    [
        (tanh_mlp(), [], OptionsError, "widths must not be empty"),
        (tanh_mlp(), [64, -1], OptionsError, "got \\[-1\\]"),
        (tanh_mlp(), list(range(1, 18)), OptionsError, "at most 16 widths"),
        ({**tanh_mlp(), "widths": []}, [8], ModelSpecError, "no width to scale"),
    ],
    ids=["empty", "negative", "too-many", "nothing-to-scale"],
)
def test_bad_input_is_refused_before_any_computation(
    sphere16: Dataset, spec: dict[str, object], widths: list[int], error: type, match: str
) -> None:
    calls: list[str] = []
    with pytest.raises(error, match=match):
        study_width(spec, sphere16, widths, on_progress=lambda f, s: calls.append(s))
    assert calls == []
