"""The report's figures, as PNG data URIs (pure functions of a :class:`Report`, no I/O).

Every figure is drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas attached
explicitly, so nothing touches pyplot's global state or the process-wide backend. Each function
returns ``None`` when the report lacks the data the figure needs. The shared figure and PNG helpers
are in :mod:`plcore.report.plots_base`.
"""

from __future__ import annotations

from collections.abc import Sequence

from plcore.report.plots_base import (
    Plot,
    closes_at_init,
    finite,
    fmt_short,
    new_axes,
    positive,
    positive_series,
    recorded_steps,
    spans,
    to_data_uri,
)
from plcore.report.schema import Report

_MARKERS: dict[str, str] = {
    "center": "*",
    "sphere": "o",
    "path": "s",
    "ascent_hessian": "^",
    "descent_lambda": "v",
}


def loss_plot(report: Report) -> Plot | None:
    """Loss of the checking run against the certified bounds (log scale).

    GD bound (Liu, Zhu & Belkin (2022), "the local PL* theorem for GD"):
    L_t <= (1 - eta mu)^t L_0 with
    ``rate = report.gd.rate``. Path bound from t* = ``report.path.certified_from_step``:
    L_t <= rate_path^(t - t*) L_t*, with L_t* = 1/2 ||r(w_t*)||^2 from ``path.residual_at_step``
    (else the last stored loss at or before t*, which is >= L_t* since GD decreases the loss).
    """
    v = report.validation
    if v is None or not v.losses:
        return None
    steps = recorded_steps(v.recorded_steps, len(v.losses))
    ts, ls = positive_series(steps, v.losses)
    if not ts:
        return None
    fig, ax = new_axes()
    ax.set_yscale("log")
    ax.plot(ts, ls, color="#1f5fa8", lw=1.8, label="GD loss $L_t$ (checking run)")
    L0 = v.losses[0]
    rate = report.gd.rate
    floor = min(ls) * 1e-2
    at_w0 = closes_at_init(report)
    if at_w0 and positive(L0) and finite(rate) and 0 < rate <= 1:
        bt, bl = positive_series(steps, (L0 * rate**t for t in steps))
        bl = [max(b, floor) for b in bl]
        ax.plot(bt, bl, "--", color="#c0392b", lw=1.4, label=r"bound $(1-\eta\mu)^t L_0$")
    t_star = report.path.certified_from_step
    prate = report.path.rate
    L_star = _loss_at(report, steps, t_star)
    if t_star is not None and L_star is not None and finite(prate) and 0 < prate <= 1:
        after = [t for t in steps if t >= t_star] or [t_star]
        pt, pl = positive_series(after, (L_star * prate ** (t - t_star) for t in after))
        pl = [max(b, floor) for b in pl]
        ax.plot(pt, pl, ":", color="#8e44ad", lw=1.8, label=f"path bound from $t^*={t_star}$")
    switch = v.step_size_switched_at
    if switch is not None:
        eta = v.step_size_after_switch
        ax.axvline(
            switch,
            color="#8e44ad",
            lw=0.9,
            ls="--",
            alpha=0.7,
            label=f"step size switched at t={switch}" + (f" (η={eta:.4g})" if finite(eta) else ""),
        )
    elif t_star is not None and t_star > 0:
        ax.axvline(t_star, color="#8e44ad", lw=0.8, alpha=0.6)
    if v.sgd_losses:
        sgd_steps = recorded_steps(v.recorded_steps, len(v.sgd_losses))
        st, sl = positive_series(sgd_steps, v.sgd_losses)
        if st:
            ax.plot(st, sl, color="#27ae60", lw=1.0, alpha=0.8, label=f"SGD (s={v.sgd_batch_size})")
    target = report.gd.target_loss
    off_chart = ""
    if positive(target):
        if target >= min(ls) * 1e-2:
            ax.axhline(target, color="#7f8c8d", lw=0.8, ls="-.", label="target loss")
        else:
            # A target far below the run would squash the curves into one flat line.
            off_chart = f" The target loss {target:.4g} lies below the plotted range."
    ax.set_xlabel("step t")
    ax.set_ylabel("loss L (½ sum of squares)")
    ax.legend(loc="best", fontsize=8)
    parts = ["Loss of the checking GD run (log scale)"]
    if at_w0 and finite(rate):
        parts.append(" against the certified linear rate from w₀")
    if t_star is not None and t_star > 0:
        parts.append(
            (" and" if len(parts) > 1 else " against")
            + f" the path certificate's bound from step t* = {t_star}"
        )
    caption = "".join(parts) + "."
    if not at_w0:
        caption += (
            " No bound is drawn from step 0: the certificate does not close at the initial weights."
        )
    if switch is not None:
        caption += (
            f" From step {switch} on, the run used the path certificate's step size"
            + (f" η = {v.step_size_after_switch:.4g}" if finite(v.step_size_after_switch) else "")
            + f" instead of η = {fmt_short(v.step_size)}."
        )
    caption += off_chart
    return Plot("loss", "Loss against the bound", caption, to_data_uri(fig))


def _loss_at(report: Report, steps: Sequence[int], t_star: int | None) -> float | None:
    """L_t* for the path bound (see :func:`loss_plot`), or None when unknown."""
    v = report.validation
    if t_star is None or v is None or t_star < 0:
        return None
    r = report.path.residual_at_step
    if positive(r):
        return 0.5 * r * r
    before = [(t, L) for t, L in zip(steps, v.losses, strict=False) if t <= t_star]
    if not before or not positive(before[-1][1]):
        return None
    return before[-1][1]


def spectrum_plot(report: Report) -> Plot | None:
    """Eigenvalues of the tangent kernel K(w0) = J J^T, sorted ascending, on a log scale.

    Non-positive eigenvalues (rank deficiency, N > m) cannot be shown on a log axis; they are
    drawn at a floor of 1e-16 lambda_max and counted in the caption.
    """
    ev = [e for e in report.initial.spectrum if finite(e)]
    if not ev:
        return None
    ev.sort()
    top = max(ev)
    if top <= 0:
        return None
    floor = top * 1e-16
    shown = [max(e, floor) for e in ev]
    n_nonpos = sum(1 for e in ev if e <= floor)
    fig, ax = new_axes()
    ax.set_yscale("log")
    idx = list(range(1, len(shown) + 1))
    ax.plot(idx, shown, ".", ms=3 if len(shown) > 200 else 5, color="#1f5fa8")
    ax.axhline(ev[0] if ev[0] > floor else floor, color="#c0392b", lw=0.8, ls="--")
    ax.set_xlabel("index (ascending)")
    ax.set_ylabel(r"eigenvalue of $K(w_0)$")
    caption = f"Spectrum of the tangent kernel at initialisation ({len(ev)} eigenvalues)."
    if n_nonpos:
        caption += f" {n_nonpos} eigenvalue(s) at or below 1e-16·λ_max are drawn at that floor."
    return Plot("spectrum", "Tangent-kernel spectrum", caption, to_data_uri(fig))


def probes_plot(report: Report) -> Plot | None:
    """lambda_min(K(w)) at the probed points w against their distance ||w - w0||.

    The sampled minimum is an upper estimate of mu = inf_B lambda_min(K); the proven lower bound
    (when known) is drawn beside it.
    """
    pts = [p for p in report.probes if finite(p.distance) and finite(p.lambda_min)]
    if not pts:
        return None
    fig, ax = new_axes()
    values = [p.lambda_min for p in pts]
    use_log = min(values) > 0 and max(values) / min(values) > 50
    if use_log:
        ax.set_yscale("log")
    positive_d = [p.distance for p in pts if p.distance > 0]
    if positive_d and max(positive_d) / min(positive_d) > 100:
        ax.set_xscale("symlog", linthresh=min(positive_d))
    for source in sorted({p.source for p in pts}):
        sel = [p for p in pts if p.source == source]
        ax.scatter(
            [p.distance for p in sel],
            [p.lambda_min for p in sel],
            marker=_MARKERS.get(source, "x"),
            s=36 if source == "center" else 18,
            alpha=0.8,
            label=source.replace("_", " "),
        )
    mu = report.constants.mu
    if finite(mu.estimate) and (not use_log or positive(mu.estimate)):
        ax.axhline(mu.estimate, color="#e67e22", lw=1.0, ls="--", label="μ estimate")
    if finite(mu.lower_bound) and (not use_log or positive(mu.lower_bound)):
        ax.axhline(mu.lower_bound, color="#c0392b", lw=1.0, ls="-", label="μ lower bound")
    rho = report.constants.search_radius
    if positive(rho):
        ax.axvline(rho, color="#7f8c8d", lw=0.8, ls=":", label="search radius ρ")
    ax.set_xlabel(r"distance $\|w - w_0\|$")
    ax.set_ylabel(r"$\lambda_{\min}(K(w))$")
    ax.legend(loc="best", fontsize=8)
    caption = (
        f"Smallest kernel eigenvalue at {len(pts)} probed points, by how they were found; "
        "the sampled minimum is an upper estimate of μ."
    )
    return Plot("probes", "λ_min along the probes", caption, to_data_uri(fig))


def distance_plot(report: Report) -> Plot | None:
    """Distance ||w_t - w0|| of the checking run against the radius R = 2 L_F ||r0|| / mu.

    From t* on, the path certificate keeps the run within ||w_t* - w0|| + R_path of w0
    (triangle inequality), drawn as a segment from t*.
    """
    v = report.validation
    if v is None or not v.distances:
        return None
    ds: Sequence[float] = v.distances
    steps = recorded_steps(v.recorded_steps, len(ds))
    pairs = [(t, d) for t, d in zip(steps, ds, strict=True) if finite(d)]
    if not pairs:
        return None
    fig, ax = new_axes()
    ax.plot(
        [t for t, _ in pairs], [d for _, d in pairs], color="#1f5fa8", lw=1.8, label="‖w_t − w_0‖"
    )
    top = max(d for _, d in pairs)
    off_chart: list[str] = []
    for value, name, style in (
        (report.constants.radius, "radius R (at w₀)", ("#c0392b", 1.2, "--")),
        (report.constants.search_radius, "search radius ρ", ("#7f8c8d", 0.8, ":")),
    ):
        if not positive(value):
            continue
        if top > 0 and value > 20 * top:
            # Far above the run: drawing it would flatten the curve; say so instead.
            off_chart.append(f"{name.split(' (')[0]} = {value:.4g}")
            continue
        color, lw, ls = style
        ax.axhline(value, color=color, lw=lw, ls=ls, label=name)
    t_star = report.path.certified_from_step
    pr = report.path.radius
    at_star = dict(pairs).get(t_star) if t_star is not None else None
    if positive(pr) and t_star is not None and at_star is not None:
        # Drawn only when w_t* itself was stored: the bound needs ||w_t* - w0|| exactly.
        ax.hlines(
            at_star + pr,
            t_star,
            pairs[-1][0],
            color="#8e44ad",
            lw=1.2,
            ls="-.",
            label=f"‖w_t* − w₀‖ + path radius (t*={t_star})",
        )
    ax.set_xlabel("step t")
    ax.set_ylabel("distance from initialisation")
    ax.legend(loc="best", fontsize=8)
    caption = "Distance ‖w_t − w₀‖ travelled by the checking run" + (
        " against the certified radius R."
        if closes_at_init(report)
        else "; R is not certified here (the certificate does not close at w₀)."
    )
    rho = report.constants.search_radius
    left = [t for t, d in pairs if positive(rho) and d > rho]
    if left:
        caption += (
            f" The run leaves the ball B(w₀, ρ) the constants were measured on at step {left[0]}."
        )
    if off_chart:
        caption += " Off the chart (more than 20 times the distance travelled): "
        caption += ", ".join(off_chart) + "."
    return Plot("distance", "Distance travelled against R", caption, to_data_uri(fig))


def pl_ratio_plot(report: Report) -> Plot | None:
    """The observed PL ratio ||grad L(w_t)||^2 / (2 L(w_t)) of the checking run against mu.

    With r = F(w) - y and grad L = J^T r, the ratio is r^T K r / ||r||^2 >= lambda_min(K(w_t))
    (Rayleigh quotient), so wherever the PL* condition 1/2 ||grad L||^2 >= mu L holds on the ball
    B(w0, rho) (THEORY.md section 2; Liu, Zhu & Belkin (2022), "uniform conditioning implies
    PL*"), the ratio must be >= mu at every iterate inside that ball. Steps inside the ball are
    shaded; a point inside it below the mu estimate shows the sampled estimate is too high, one
    below the proven lower bound would contradict the bound. From t* the path certificate's mu
    (on B(w_t*, rho*)) is drawn too.
    """
    v = report.validation
    if v is None or not v.pl_ratios:
        return None
    steps = recorded_steps(v.recorded_steps, len(v.pl_ratios))
    pairs = [(t, q) for t, q in zip(steps, v.pl_ratios, strict=True) if positive(q)]
    if not pairs:
        return None
    fig, ax = new_axes()
    ts, qs = [t for t, _ in pairs], [q for _, q in pairs]
    mu = report.constants.mu
    levels = [x for x in (mu.estimate, mu.lower_bound, report.path.mu) if positive(x)]
    lo, hi = min(qs + levels), max(qs + levels)
    if hi / lo > 50:
        ax.set_yscale("log")
    rho = report.constants.search_radius
    dists = v.distances if len(v.distances) == len(v.pl_ratios) else []
    inside_at: dict[int, bool] = {}
    if positive(rho) and dists:
        flags = [finite(d) and d <= rho for d in dists]
        inside_at = dict(zip(steps, flags, strict=True))
        for a, b in spans(steps, flags):
            ax.axvspan(a, max(b, a + 0.5), color="#d5f5e3", alpha=0.8, lw=0)
    ax.plot(ts, qs, color="#1f5fa8", lw=1.6, label=r"observed $\|\nabla L\|^2 / (2L)$")
    in_pts = [(t, q) for t, q in pairs if inside_at.get(t)]
    if in_pts:
        # markers too: a ball the run leaves after a step or two is invisible as a span
        ax.scatter(
            [t for t, _ in in_pts],
            [q for _, q in in_pts],
            color="#1e8449",
            s=14 if len(in_pts) <= 60 else 4,
            zorder=3,
            label=f"inside the ball ‖w − w₀‖ ≤ ρ = {rho:.4g}",
        )
    if finite(mu.estimate) and mu.estimate > 0:
        ax.axhline(
            mu.estimate, color="#e67e22", lw=1.2, ls="--", label="μ estimate (sampled, on the ball)"
        )
    if finite(mu.lower_bound) and mu.lower_bound > 0:
        ax.axhline(
            mu.lower_bound,
            color="#c0392b",
            lw=1.2,
            ls="-",
            label="μ lower bound (proven, on the ball)",
        )
    t_star, pmu = report.path.certified_from_step, report.path.mu
    if t_star is not None and t_star > 0 and positive(pmu):
        ax.hlines(
            pmu, t_star, ts[-1], color="#8e44ad", lw=1.4, ls="-.", label=f"μ from t* = {t_star}"
        )
    below_est = [
        t for t, q in pairs if inside_at.get(t) and finite(mu.estimate) and q < mu.estimate
    ]
    below_lb = [
        t for t, q in pairs if inside_at.get(t) and finite(mu.lower_bound) and q < mu.lower_bound
    ]
    if below_est:
        ax.scatter(
            below_est,
            [q for t, q in pairs if t in set(below_est)],
            color="#c0392b",
            s=18,
            zorder=3,
            label="inside the ball, below μ",
        )
    ax.set_xlabel("step t")
    ax.set_ylabel(r"$\|\nabla L\|^2 / (2L)$")
    ax.legend(loc="best", fontsize=8)
    n_in = len(in_pts)
    caption = (
        "Observed PL ratio ‖∇L‖²/(2L) along the checking run. PL* with constant μ means this "
        "ratio stays at or above μ at every point inside the ball B(w₀, ρ) (green); outside "
        "the ball nothing is claimed."
    )
    if not inside_at:
        caption += " The ball is unknown, so no step is marked as inside it."
    elif n_in == 0:
        caption += " No stored step of the run lies inside the ball."
    elif below_lb:
        caption += (
            f" {len(below_lb)} stored step(s) inside the ball fall below the proven lower bound "
            "of μ: the bound is contradicted."
        )
    elif below_est:
        caption += (
            f" {len(below_est)} stored step(s) inside the ball fall below the sampled μ "
            "estimate (red): the estimate is too high there."
        )
    else:
        inside_min = min(q for _, q in in_pts)
        caption += (
            f" Inside the ball ({n_in} stored step{'s' if n_in != 1 else ''}) the smallest "
            f"ratio is {inside_min:.4g}, "
            f"above μ = {fmt_short(mu.estimate)}: consistent with the certificate."
        )
    if t_star is not None and t_star > 0 and positive(pmu):
        caption += f" From t* = {t_star} the path certificate's μ = {pmu:.4g} applies."
    return Plot("pl-ratio", "Observed PL ratio against μ", caption, to_data_uri(fig))


def all_plots(report: Report) -> list[Plot]:
    """Every figure the report has data for, in page order."""
    plots = (
        loss_plot(report),
        pl_ratio_plot(report),
        distance_plot(report),
        spectrum_plot(report),
        probes_plot(report),
    )
    return [p for p in plots if p is not None]
