"""Bounds of sup|phi'| and sup|phi''| that hold in floating point (docs/theory.md, section 15).

``plcore.models.layers.ACTIVATIONS`` documents the closed forms; its float values are the nearest
doubles at best (SiLU's sup|phi'| was 6e-10 too small). The proven Hessian bound
(:mod:`plcore.estimate.analytic`) needs each constant from ABOVE, so here every closed form is
evaluated in float64 (a handful of correctly or nearly correctly rounded libm calls: relative error
below 10 u) and then rounded up by :data:`ACTIVATION_ULPS` ulps (2^-53 each, relative), which
dominates that error. Where the maximiser has no closed form (SiLU) Newton's method gives x* to
~1e-15 and the value phi'(x*) there is off by O((x - x*)^2), far below one ulp. The tests check
every constant against an independent 50-digit maximisation (mpmath) of the same derivative:
true sup <= constant <= true sup (1 + 1e-13).
"""

from __future__ import annotations

import math
from typing import Final

from plcore.models.layers import ActivationInfo

#: ulps added to each float64 evaluation of a closed form
ACTIVATION_ULPS: Final = 16

_SQRT_2PI: Final = math.sqrt(2.0 * math.pi)


def round_up(x: float, ulps: int = ACTIVATION_ULPS) -> float:
    """x moved up by ``ulps`` units in the last place (exact integers 0, 1/4, 1/2, 1 stay)."""
    if x in (0.0, 0.25, 0.5, 1.0):
        return x
    for _ in range(ulps):
        x = math.nextafter(x, math.inf)
    return x


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _silu_d1_sup() -> float:
    """max of silu'(x) = s + x s (1 - s): root of silu''(x) = s (1-s) (2 + x (1 - 2 s)) near 2.4."""
    x = 2.4
    for _ in range(50):
        s = _sigmoid(x)
        h = 2.0 + x * (1.0 - 2.0 * s)  # silu'' / (s (1 - s))
        dh = (1.0 - 2.0 * s) - 2.0 * x * s * (1.0 - s)
        step = h / dh
        x -= step
        if abs(step) < 1e-16:
            break
    s = _sigmoid(x)
    return s + x * s * (1.0 - s)


def _gelu_d1_sup() -> float:
    # phi'(x) = Phi(x) + x phi_N(x), maximal at x = sqrt 2 (phi'' = phi_N(x) (2 - x^2) = 0)
    x = math.sqrt(2.0)
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))) + x * math.exp(-x * x / 2) / _SQRT_2PI


def _closed_forms() -> dict[str, tuple[float, float]]:
    """(sup|phi'|, sup|phi''|) evaluated in float64 (before rounding up)."""
    return {
        "identity": (1.0, 0.0),
        "tanh": (1.0, 4.0 / (3.0 * math.sqrt(3.0))),
        "erf": (2.0 / math.sqrt(math.pi), 2.0 * math.sqrt(2.0 / math.pi) * math.exp(-0.5)),
        "sigmoid": (0.25, 1.0 / (6.0 * math.sqrt(3.0))),
        "softplus": (1.0, 0.25),
        "gelu": (_gelu_d1_sup(), 2.0 / _SQRT_2PI),
        "silu": (_silu_d1_sup(), 0.5),
        "sin": (1.0, 1.0),
    }


#: (sup|phi'|, sup|phi''|) rounded up, per twice-differentiable activation
CERTIFIED: Final[dict[str, tuple[float, float]]] = {
    name: (round_up(d1), round_up(d2)) for name, (d1, d2) in _closed_forms().items()
}


def activation_bounds(info: ActivationInfo) -> tuple[float, float]:
    """(d1, d2) >= (sup|phi'|, sup|phi''|) in floating point: :data:`CERTIFIED`, or the model's
    own value rounded up for an activation not listed (never below the model's value)."""
    d1_model, d2_model = info.d1_sup, float(info.d2_sup or 0.0)
    if info.name in CERTIFIED:
        d1, d2 = CERTIFIED[info.name]
    else:
        d1, d2 = round_up(d1_model), round_up(d2_model)
    return max(d1, d1_model), max(d2, d2_model)
