"""Figures of the width (depth) study page: Hessian norm with the fitted line, lambda0 with its
infinite-width value, kernel drift, mu and R, each against the width (PNG data URIs, like the
report's figures; :mod:`plcore.report.plots_base`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from plcore.report.plots_base import Plot, finite, new_axes, positive, to_data_uri
from plcore.report.study_schema import StudyResult, StudyRow

_MARKERS = "osD^v<>p"


def _x(result: StudyResult, r: StudyRow) -> float:
    return float(r.width if result.kind == "width" else (r.depth or 0))


def _xlabel(result: StudyResult) -> str:
    return "hidden width W" if result.kind == "width" else "hidden layers (depth)"


def _scatter_by_seed(
    ax: object, result: StudyResult, value: Callable[[StudyRow], float | None], label: str
) -> int:
    """One marker series per seed; returns the number of points drawn."""
    drawn = 0
    for i, seed in enumerate(result.seeds):
        pts = [(_x(result, r), value(r)) for r in result.rows if r.seed == seed]
        pts = [(x, y) for x, y in pts if positive(y)]
        if not pts:
            continue
        ax.plot(  # type: ignore[attr-defined]
            [p[0] for p in pts],
            [p[1] for p in pts],
            _MARKERS[i % len(_MARKERS)],
            ms=6,
            alpha=0.8,
            label=f"{label}, seed {seed}",
        )
        drawn += len(pts)
    return drawn


def hessian_plot(result: StudyResult) -> Plot | None:
    fig, ax = new_axes()
    if not _scatter_by_seed(ax, result, lambda r: r.hessian_norm, "||H_F(w0)||"):
        return None
    s = result.hessian_norm_slope
    xs = sorted({_x(result, r) for r in result.rows if positive(r.hessian_norm)})
    grid = np.geomspace(xs[0], xs[-1], 50) if xs and xs[0] > 0 else np.array([])
    if s.estimate is not None and s.intercept is not None and grid.size:
        ax.plot(grid, np.exp(s.intercept) * grid**s.estimate, "-", color="k", label="fit")
    if result.expected_slope is not None and s.intercept is not None and grid.size:
        # theory's slope through the fitted line's value at the geometric middle width
        mid = math.sqrt(grid[0] * grid[-1])
        y_mid = math.exp(s.intercept) * mid ** (s.estimate or 0.0)
        ax.plot(
            grid,
            y_mid * (grid / mid) ** result.expected_slope,
            "--",
            color="grey",
            label=f"slope {result.expected_slope:g} (theory)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_xlabel(result))
    ax.set_ylabel("||H_F(w0)||")
    ax.legend(fontsize=8)
    ci = (
        f" (95% interval [{s.ci_low:.3f}, {s.ci_high:.3f}])"
        if s.ci_low is not None and s.ci_high is not None
        else ""
    )
    est = f"{s.estimate:.3f}" if s.estimate is not None else "n/a"
    return Plot(
        "hessian",
        "Hessian norm at w0",
        f"Log-log, every seed; fitted slope {est}{ci}."
        + (
            f" Dashed: the slope {result.expected_slope:g} the theory expects."
            if result.expected_slope is not None
            else ""
        ),
        to_data_uri(fig),
    )


def lambda_plot(result: StudyResult) -> Plot | None:
    fig, ax = new_axes()
    if not _scatter_by_seed(ax, result, lambda r: r.lambda_min, "lambda0"):
        return None
    lam_inf = result.lambda_min_infinite_width
    if positive(lam_inf):
        ax.axhline(lam_inf, color="k", ls="--", label="infinite width")
    ax.set_xscale("log")
    ax.set_xlabel(_xlabel(result))
    ax.set_ylabel("lambda_min(K(w0))")
    ax.legend(fontsize=8)
    tail = (
        f" Dashed: the infinite-width value {lam_inf:.4g} ({result.infinite_width_method})."
        if positive(lam_inf)
        else f" No infinite-width value: {result.infinite_width_method}."
        if result.infinite_width_method
        else ""
    )
    return Plot("lambda0", "lambda0 = lambda_min(K(w0))", "Every seed." + tail, to_data_uri(fig))


def drift_plot(result: StudyResult) -> Plot | None:
    fig, ax = new_axes()
    if not _scatter_by_seed(ax, result, lambda r: r.kernel_drift, "drift"):
        return None
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_xlabel(result))
    ax.set_ylabel("||K(w_T) - K(w0)||_F / ||K(w0)||_F")
    ax.legend(fontsize=8)
    s = result.kernel_drift_slope
    fit = f" Fitted slope {s.estimate:.3f}." if s is not None and s.estimate is not None else ""
    return Plot(
        "drift",
        "Relative kernel drift after the run",
        "w_T: the last iterate of the checking run (T steps of GD)." + fit,
        to_data_uri(fig),
    )


def mu_radius_plot(result: StudyResult) -> Plot | None:
    if not any(finite(r.mu) or finite(r.radius) for r in result.rows):
        return None
    fig, ax = new_axes()
    n_mu = _scatter_by_seed(ax, result, lambda r: r.mu, "mu")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_xlabel(result))
    ax.set_ylabel("mu (estimate)")
    ax2 = ax.twinx()
    pts = [(_x(result, r), r.radius) for r in result.rows if positive(r.radius)]
    if pts:
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], "x", color="tab:red", label="R")
        ax2.set_yscale("log")
        ax2.set_ylabel("R = 2 L_F ||r0|| / mu", color="tab:red")
    if not n_mu and not pts:
        return None
    ax.legend(fontsize=8, loc="upper left")
    return Plot(
        "mu-radius",
        "mu and R",
        "mu: the PL* constant's estimate on the chosen ball (1/2-normalized); crosses: the "
        "radius R of the certificate (right axis).",
        to_data_uri(fig),
    )


def study_plots(result: StudyResult) -> list[Plot]:
    plots = [hessian_plot(result), lambda_plot(result), drift_plot(result)]
    plots.append(mu_radius_plot(result))
    return [p for p in plots if p is not None]
