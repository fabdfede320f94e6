"""Activation constants of the proven Hessian bound against 50-digit maximisation (mpmath)."""

from __future__ import annotations

from collections.abc import Callable

import mpmath
import pytest

from plcore.estimate.activation_constants import CERTIFIED, activation_bounds, round_up
from plcore.models.layers import ACTIVATIONS

mpmath.mp.dps = 50

_PHI: dict[str, Callable[[mpmath.mpf], mpmath.mpf]] = {
    "identity": lambda x: x,
    "tanh": mpmath.tanh,
    "erf": mpmath.erf,
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "softplus": lambda x: mpmath.log(1 + mpmath.exp(x)),
    "gelu": lambda x: x * (1 + mpmath.erf(x / mpmath.sqrt(2))) / 2,
    "silu": lambda x: x / (1 + mpmath.exp(-x)),
    "sin": mpmath.sin,
}


def _sup_abs_derivative(phi: Callable[[mpmath.mpf], mpmath.mpf], order: int) -> mpmath.mpf:
    """sup over [-40, 40] of |phi^(order)|: a grid of step 1/8, then a 50-digit root of the next
    derivative (mpmath.findroot) from the best grid points; independent of the code's closed
    forms. Outside [-40, 40] every derivative here is within e^-38 of its limit (0 or 1)."""

    def d(x: mpmath.mpf, k: int) -> mpmath.mpf:
        return mpmath.diff(phi, x, k)

    grid = [mpmath.mpf(i) / 8 for i in range(-320, 321)]
    vals = sorted(((abs(d(x, order)), x) for x in grid), reverse=True)[:6]
    best = vals[0][0]
    for _, x0 in vals:
        try:
            root = mpmath.findroot(lambda x: d(x, order + 1), x0)
        except (ValueError, ZeroDivisionError):
            continue
        if abs(root - x0) < 1:
            best = max(best, abs(d(root, order)))
    if order == 1:
        best = max(best, abs(d(mpmath.mpf(60), 1)))  # limits (softplus', identity')
    return best


@pytest.mark.parametrize("name", sorted(CERTIFIED))
def test_constants_are_upper_bounds_within_1e_13(name: str) -> None:
    d1, d2 = CERTIFIED[name]
    for value, order in ((d1, 1), (d2, 2)):
        true = _sup_abs_derivative(_PHI[name], order)
        assert mpmath.mpf(value) >= true, (name, order, value, true)
        assert value <= float(true) * (1 + 1e-13) + 1e-300, (name, order, value, true)


def test_silu_constant_exceeds_the_layers_table_value() -> None:
    # the table's 1.0998393194332553 is below sup|silu'| = 1.09983932012886...
    assert CERTIFIED["silu"][0] > ACTIVATIONS["silu"].d1_sup
    assert activation_bounds(ACTIVATIONS["silu"])[0] == CERTIFIED["silu"][0]


def test_every_smooth_activation_has_a_certified_constant() -> None:
    smooth = {n for n, info in ACTIVATIONS.items() if info.twice_differentiable}
    assert smooth == set(CERTIFIED)


def test_round_up_moves_inexact_values_and_keeps_exact_ones() -> None:
    assert round_up(0.25) == 0.25
    assert round_up(0.1) > 0.1
