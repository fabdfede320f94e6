"""Width extrapolation: the log-log fit and the closing factor."""

from __future__ import annotations

import math

import pytest

from plcore.certificate.width import closing_factor, fit_width, scaled_widths
from plcore.estimate.bounds import residual_threshold


def test_fit_recovers_power_law_and_closing_width() -> None:
    widths = [64, 256, 1024]
    factors = [50.0 * (w / 64) ** -0.5 for w in widths]
    slope, w_close = fit_width(widths, factors)
    assert slope == pytest.approx(-0.5)
    assert w_close == pytest.approx(64 * 50.0**2, rel=1e-9)


def test_fit_refuses_growing_factor_and_single_width() -> None:
    assert fit_width([10, 20], [1.0, 2.0])[1] is None
    assert fit_width([10, 10], [3.0, 2.0]) == (None, None)


def test_closing_factor_is_residual_over_threshold() -> None:
    r_star = residual_threshold(2.0, 3.0, 0.1).r_star
    assert closing_factor(1.5, 2.0, 3.0, 0.1) == pytest.approx(1.5 / r_star)
    assert closing_factor(1.5, 2.0, 3.0, 0.0) == 0.0
    assert closing_factor(1.5, 0.0, 3.0, 0.1) is None


def test_scaled_widths_round_and_keep_at_least_one() -> None:
    assert scaled_widths([64, 3], 0.25) == [16, 1]
    assert math.isclose(sum(scaled_widths([100], 1.0)), 100)


def test_nearly_flat_fit_gives_no_closing_width_instead_of_overflowing() -> None:
    # factor 1e6 falling by 1e-4 per decade: the closing width is astronomically far away.
    slope, w_close = fit_width([64, 256, 1024], [1e6, 1e6 * 4**-1e-4, 1e6 * 16**-1e-4])
    assert slope is not None and slope < 0
    assert w_close is None


def test_extrapolation_is_estimated_and_says_why_for_deep_models() -> None:
    from plcore.certificate.width import width_note

    deep = width_note(2, "ntk", None)
    assert deep.startswith("estimated") and "O(1)" in deep and "2 hidden layers" in deep
    shallow = width_note(1, "ntk", None)
    assert "prediction, never a certificate" in shallow and "O(1)" not in shallow
    assert "NTK parameterization" in width_note(1, "standard", None)
