"""The power-law fit of the width study: slope and t-interval against scipy's linregress."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from plcore.study.fit import fit_power_law


def test_exact_power_law_gives_its_exponent_and_a_zero_width_interval() -> None:
    x = [64.0, 64.0, 256.0, 256.0, 1024.0]
    y = [3.0 * xi**-0.5 for xi in x]
    fit = fit_power_law(x, y)
    assert fit.estimate == pytest.approx(-0.5, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(3.0), abs=1e-12)
    assert fit.ci_low == pytest.approx(-0.5, abs=1e-9)
    assert fit.ci_high == pytest.approx(-0.5, abs=1e-9)


def test_slope_and_interval_match_linregress_with_the_t_quantile() -> None:
    rng = np.random.default_rng(3)
    x = np.repeat([32.0, 128.0, 512.0, 2048.0], 2)
    y = 2.0 * x**-0.45 * np.exp(0.1 * rng.standard_normal(x.size))
    fit = fit_power_law(list(x), list(y))
    ref = stats.linregress(np.log(x), np.log(y))
    t = stats.t.ppf(0.975, x.size - 2)
    assert fit.estimate == pytest.approx(ref.slope, rel=1e-12)
    assert fit.stderr == pytest.approx(ref.stderr, rel=1e-10)
    assert fit.ci_low == pytest.approx(ref.slope - t * ref.stderr, rel=1e-10)
    assert fit.ci_high == pytest.approx(ref.slope + t * ref.stderr, rel=1e-10)
    assert fit.n_points == 8 and fit.confidence == 0.95


def test_one_seed_per_width_needs_three_widths_for_an_interval() -> None:
    two = fit_power_law([64.0, 256.0], [1.0, 0.5])
    assert two.estimate == pytest.approx(-0.5) and two.ci_low is None and two.ci_high is None
    three = fit_power_law([64.0, 256.0, 1024.0], [1.0, 0.55, 0.24])
    assert three.ci_low is not None and three.ci_high is not None
    assert three.ci_low < three.estimate < three.ci_high  # type: ignore[operator]


def test_missing_zero_and_infinite_values_are_left_out_and_counted() -> None:
    fit = fit_power_law([64.0, 128.0, 256.0, 512.0, 1024.0], [1.0, None, 0.0, math.inf, 1 / 4])
    assert fit.n_points == 2 and fit.n_excluded == 3
    assert fit.estimate == pytest.approx(-0.5)


def test_a_single_width_has_no_slope() -> None:
    fit = fit_power_law([64.0, 64.0, 64.0], [1.0, 2.0, 3.0])
    assert fit.estimate is None and fit.ci_low is None and fit.n_points == 3
