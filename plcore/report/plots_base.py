"""Shared pieces of the report figures: the :class:`Plot` record, figure and PNG helpers, and the
small numeric helpers the plot functions use (see :mod:`plcore.report.plots`)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard

from plcore.report.schema import Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_WIDTH_IN, _HEIGHT_IN, _DPI = 6.4, 3.6, 110


@dataclass(frozen=True)
class Plot:
    """One figure: a PNG data URI plus the text that goes with it."""

    key: str
    title: str
    caption: str
    data_uri: str


def finite(x: float | None) -> TypeGuard[float]:
    return x is not None and math.isfinite(x)


def positive(x: float | None) -> TypeGuard[float]:
    return x is not None and math.isfinite(x) and x > 0


def new_axes() -> tuple[Figure, Axes]:
    # matplotlib takes about 0.8 s to import: only processes that draw a figure pay for it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, which="major", alpha=0.3)
    return fig, ax


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def positive_series(ts: Iterable[int], ys: Iterable[float]) -> tuple[list[int], list[float]]:
    """Keep the points a log axis can show (finite and > 0)."""
    pairs = [(t, y) for t, y in zip(ts, ys, strict=False) if positive(y)]
    return [t for t, _ in pairs], [y for _, y in pairs]


def fmt_short(x: float | None) -> str:
    return f"{x:.4g}" if finite(x) else "n/a"


def closes_at_init(report: Report) -> bool:
    """Whether the certificate closes at w0 itself (so the rate 1 - eta mu holds from step 0)."""
    if report.at_init is not None:
        return report.at_init.closes
    return report.constants.radius_closes


def recorded_steps(steps: Sequence[int], n: int) -> list[int]:
    """Step index of each of the n stored points: ``validation.recorded_steps`` when it matches
    (long runs are downsampled), else 0..n-1."""
    return list(steps) if len(steps) == n else list(range(n))


def spans(steps: Sequence[int], inside: Sequence[bool]) -> list[tuple[int, int]]:
    """Maximal [first, last] step ranges where ``inside`` holds."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    prev = 0
    for t, ok in zip(steps, inside, strict=True):
        if ok and start is None:
            start = t
        if not ok and start is not None:
            out.append((start, prev))
            start = None
        prev = t
    if start is not None:
        out.append((start, prev))
    return out
