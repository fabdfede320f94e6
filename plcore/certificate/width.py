"""Width extrapolation of the closing factor (acceptance item of the PL* certificate issue).

For an MLP spec the factor ||r0|| / r* at w0 (r* the residual threshold of THEORY.md section 4,
with beta = ||H_F(w0)||, the Hessian tensor norm at w0: no probes) is computed for the same spec
at smaller hidden widths (all hidden widths scaled by the same fraction, same seed). For NTK
parameterization and a linear output, ||H_F|| = O~(width^-1/2) while lambda0, ||J0|| and ||r0||
converge (THEORY.md section 5), so log(factor) is close to linear in log(width) with slope near
-1/2. A least-squares line through (log width, log factor) is extrapolated to factor = 1.

Tier: always estimated (:func:`width_note`): beta at w0 from the power method is a lower estimate
of the sup over a ball, and the extrapolation runs over decades; with two or more hidden layers
the proven bound (plcore.estimate.analytic) is O(1) in the width, so the predicted closing width
can never become rigorous by widening.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from plcore.dataset import Dataset
from plcore.estimate.bounds import residual_threshold
from plcore.models.base import Model
from plcore.models.spec import load_spec_model, with_widths
from plcore.report.schema import WidthExtrapolation

FactorFn = Callable[[Model, Dataset], float | None]
"""(model, data) -> ||r0|| / r* at w0 (None when lambda0 = 0)."""


def closing_factor(
    residual_norm: float, lambda0: float, jac_norm: float, beta: float
) -> float | None:
    """||r0|| / r*(lambda0, ||J0||, beta); <= 1 means the certificate closes at w0. None when
    lambda0 = 0 (r* = 0); 0.0 when beta = 0 (r* = inf)."""
    if not lambda0 > 0:
        return None
    r_star = residual_threshold(lambda0, jac_norm, beta).r_star
    return residual_norm / r_star if math.isfinite(r_star) else 0.0


def fit_width(
    widths: Sequence[float], factors: Sequence[float]
) -> tuple[float | None, float | None]:
    """(slope, width_to_close) of the least-squares line log f = a + b log w.

    width_to_close = exp(-a / b) solves f = 1; None unless b < 0 (the factor must shrink with
    width). Needs >= 2 distinct widths with finite positive factors.
    """
    pts = [
        (math.log(w), math.log(f))
        for w, f in zip(widths, factors, strict=True)
        if w > 0 and f is not None and f > 0 and math.isfinite(f)
    ]
    if len({x for x, _ in pts}) < 2:
        return None, None
    x = np.array([p[0] for p in pts])
    yv = np.array([p[1] for p in pts])
    b, a = np.polyfit(x, yv, 1)
    slope = float(b)
    if slope >= 0:
        return slope, None
    log_width = float(-a / b)
    if not math.isfinite(log_width) or log_width > math.log(1e300):
        return slope, None
    return slope, math.exp(log_width)


def scaled_widths(widths: Sequence[int], fraction: float) -> list[int]:
    """Hidden widths times ``fraction`` (rounded, at least 1)."""
    return [max(1, round(w * fraction)) for w in widths]


def width_sweep(
    spec: Mapping[str, Any],
    data: Dataset,
    fractions: Sequence[float],
    *,
    factor_at: FactorFn,
    prepare: Callable[[Model], Model],
    reference_factor: float | None,
    on_width: Callable[[int, int], None] | None = None,
) -> WidthExtrapolation | None:
    """Factors at the scaled widths and the fit (None for specs without hidden layers).

    ``reference_factor`` is the factor of the model itself (fraction 1, computed by the caller
    with the same method), so the full-width model is not rebuilt. ``prepare`` moves a freshly
    built model to the run's device.
    """
    hidden = [int(w) for w in spec.get("widths", [])]
    if spec.get("type") != "mlp" or not hidden:
        return None
    widths: list[int] = []
    factors: list[float] = []
    for i, f in enumerate(sorted(set(fractions))):
        if on_width is not None:
            on_width(i, len(fractions))
        ws = scaled_widths(hidden, f)
        if f == 1.0:
            factor = reference_factor
        else:
            model = prepare(load_spec_model(with_widths(spec, ws)))
            factor = factor_at(model, data)
        if factor is not None and math.isfinite(factor):
            widths.append(max(ws))
            factors.append(factor)
    slope, w_close = fit_width(widths, factors)
    return WidthExtrapolation(
        widths=widths,
        factors=factors,
        slope=slope,
        width_to_close=w_close,
        method=(
            "factor = ||r0|| / r* at w0 with beta = ||H_F(w0)|| (alternating power method, no "
            "probes), same spec and seed with all hidden widths scaled; least-squares line of "
            "log factor against log(max hidden width), extrapolated to factor = 1"
        ),
        tier="estimated",
        note=width_note(len(hidden), spec.get("parameterization"), spec.get("output_activation")),
    )


def width_note(n_hidden: int, parameterization: object, output_activation: object) -> str:
    """The tier statement of the extrapolation (docs/theory.md, section 11)."""
    base = (
        "estimated: beta at w0 is a power-method value (a lower estimate of the sup over any "
        "ball, so optimistic), and the fit extrapolates it over decades of width; the closing "
        "width is a prediction, never a certificate"
    )
    if n_hidden >= 2:
        return base + (
            f"; with {n_hidden} hidden layers the proven beta bound does not shrink with width "
            "(O(1)), so no rigorous certificate can follow from widening alone"
        )
    if parameterization != "ntk" or output_activation is not None:
        return base + (
            "; the O(width^-1/2) decay of ||H_F|| needs NTK parameterization and a "
            "linear output (THEORY 5), which this spec does not have"
        )
    return base
