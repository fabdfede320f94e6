"""Report numbers must be JSON numbers: inf and NaN become null."""

from __future__ import annotations

import math


def finite_or_none(x: float | None) -> float | None:
    """``float(x)``, or None for None, inf and NaN (JSON has neither)."""
    return None if x is None or not math.isfinite(x) else float(x)
