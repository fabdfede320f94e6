"""Least-squares power-law fit with a confidence interval for the exponent.

For points (x_j, y_j), j = 1..n, with x_j, y_j > 0 (all seeds of all widths, each its own point),
the line log y = a + b log x is fitted by ordinary least squares:

    b = S_xy / S_xx,  a = mean(log y) - b mean(log x),
    s^2 = sum (log y_j - a - b log x_j)^2 / (n - 2),   se(b) = s / sqrt(S_xx),

with S_xx = sum (log x_j - mean)^2 and S_xy likewise. Under the usual model (independent normal
errors around the line) (b - b_true) / se(b) has Student's t distribution with n - 2 degrees of
freedom, so the 95 % interval is b +- t_{0.975, n-2} se(b). It needs n >= 3 points on at least two
distinct x (one seed per width works from three widths); with fewer the interval is null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from plcore.report.study_schema import SlopeFit

CONFIDENCE = 0.95

METHOD = (
    "ordinary least squares of log(y) on log(x) over every (value, seed) point; 95 % interval "
    "b +- t(0.975, n - 2) se(b), se(b) = s / sqrt(S_xx)"
)


def fit_power_law(
    x: Sequence[float], y: Sequence[float | None], confidence: float = CONFIDENCE
) -> SlopeFit:
    """The exponent b of y ~ x^b with its ``confidence`` interval (see the module docstring).

    Points with a missing, non-finite or non-positive y (or x) are left out and counted in
    ``n_excluded``; the estimate is null with fewer than two distinct x.
    """
    pts = [
        (math.log(xi), math.log(yi))
        for xi, yi in zip(x, y, strict=True)
        if yi is not None and math.isfinite(yi) and yi > 0 and math.isfinite(xi) and xi > 0
    ]
    n = len(pts)
    excluded = len(x) - n
    lx = np.array([p[0] for p in pts])
    ly = np.array([p[1] for p in pts])
    if n < 2 or np.ptp(lx) == 0:
        return SlopeFit(
            estimate=None,
            ci_low=None,
            ci_high=None,
            n_points=n,
            n_excluded=excluded,
            confidence=confidence,
            method=METHOD,
        )
    sxx = float(((lx - lx.mean()) ** 2).sum())
    b = float(((lx - lx.mean()) * (ly - ly.mean())).sum() / sxx)
    a = float(ly.mean() - b * lx.mean())
    if n < 3:
        lo = hi = se = None
    else:
        resid = ly - (a + b * lx)
        se = math.sqrt(float((resid**2).sum()) / (n - 2) / sxx)
        from scipy import stats  # slow to import: only where it is used

        t = float(stats.t.ppf(0.5 + confidence / 2, n - 2))
        lo, hi = b - t * se, b + t * se
    return SlopeFit(
        estimate=b,
        ci_low=lo,
        ci_high=hi,
        stderr=se,
        intercept=a,
        n_points=n,
        n_excluded=excluded,
        confidence=confidence,
        method=METHOD,
    )


def slope_text(s: SlopeFit) -> str:
    """``"-0.452 [-0.629, -0.270]"``: the slope and its interval, for reasons and pages."""
    if s.estimate is None:
        return "n/a (fewer than two sizes with a positive value)"
    if s.ci_low is None or s.ci_high is None:
        return f"{s.estimate:.3f} (no interval: fewer than 3 points)"
    return f"{s.estimate:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]"
