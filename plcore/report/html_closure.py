"""The report's closure tables: the path certificate, closure at initialisation, width
extrapolation and PL*_ε."""

from __future__ import annotations

from plcore.report.html_text import (
    NA,
    Row,
    esc,
    fmt_bool,
    fmt_number,
    kv_table,
    missing,
    rate_cell,
    section,
)
from plcore.report.schema import Report


def path_section(report: Report) -> str:
    p = report.path
    rows: list[Row] = [
        (
            "Residual threshold r* at w₀",
            fmt_number(p.residual_threshold),
            "closes at w₀ if ‖r₀‖ ≤ r*",
        ),
        ("Certified from step t*", fmt_number(p.certified_from_step), "— if never reached"),
        ("Residual ‖r(w_t*)‖ at t*", fmt_number(p.residual_at_step), "must be ≤ r*(w_t*)"),
        (
            "Threshold r*(w_t*) at t*",
            fmt_number(p.residual_threshold_at_step),
            "same formula at w_t*",
        ),
        ("λ_min(K(w_t*))", fmt_number(p.lambda_min_at_step), "exact (eigh)"),
        ("‖J(w_t*)‖₂", fmt_number(p.jacobian_norm_at_step), "exact (eigh)"),
        (
            "β_F on the ball around w_t*",
            fmt_number(p.beta),
            {"rigorous": "proven bound", "estimated": "sampled (Hessian norms)"}.get(
                p.tier or "", "Lipschitz constant of J"
            ),
        ),
        ("Ball radius ρ* at t*", fmt_number(p.ball_radius), "constants hold on B(w_t*, ρ*)"),
        ("μ from t*", fmt_number(p.mu), "(√λ_min(K(w_t*)) − β_F ρ*)²"),
        ("Radius from t*", fmt_number(p.radius), "GD stays within it of w_t*; ≤ ρ*"),
        ("Step size η from t*", fmt_number(p.step_size), "sum loss; the run used it from t* on"),
        ("Rate from t*", rate_cell(p.rate), "L_t ≤ rate^(t − t*) L_t*"),
        ("Bound held after t*", fmt_bool(p.bound_held_after), "checked on the rest of the run"),
        ("Steps needed (estimate)", fmt_number(p.steps_needed_estimate), "— unless never reached"),
        ("Tier", esc(p.tier) if p.tier else NA, "rigorous: proven β_F; estimated: sampled"),
        (
            "Full checks along the run",
            fmt_number(p.checked_steps),
            "steps where K and H_F were computed",
        ),
    ]
    note = f"<p class='note'>{esc(p.note)}</p>" if p.note else ""
    return section("path", "Path certificate", kv_table(rows) + note)


def at_init_section(report: Report) -> str:
    a = report.at_init
    if a is None:
        return section("at-init", "Closure at initialisation", missing("Not computed."))
    rows: list[Row] = [
        ("Closes at w₀", fmt_bool(a.closes), ""),
        ("Failing inequality", esc(a.failing_inequality) if a.failing_inequality else NA, ""),
        (
            "Needed radius 2 ‖J(w₀)‖ ‖r₀‖ / λ_min(K(w₀))",
            fmt_number(a.required_radius),
            "the smallest ball any radius R can need (weight-space distance)",
        ),
        (
            "Allowed radius √λ_min(K(w₀)) / β_F",
            fmt_number(a.allowed_radius),
            "μ > 0 is guaranteed only on balls smaller than this",
        ),
        ("Initial residual ‖r₀‖", fmt_number(a.residual_norm), "‖F(w₀) − y‖"),
        (
            "β_F behind r*",
            fmt_number(a.beta),
            (esc(a.beta_kind) + (" (analytic bound)" if a.beta_kind == "proven" else " (sampled)"))
            if a.beta_kind
            else "",
        ),
        ("Residual threshold r*", fmt_number(a.residual_threshold), "closes when ‖r₀‖ ≤ r*"),
        ("Closure factor ‖r₀‖ / r*", fmt_number(a.factor), "≤ 1 closes"),
        (
            "Threshold r* with the sampled β_F",
            fmt_number(a.estimated_residual_threshold),
            "— unless r* above used a proven β_F",
        ),
        (
            "Closure factor with the sampled β_F",
            fmt_number(a.estimated_factor),
            "how far off w₀ is even with the optimistic β_F",
        ),
    ]
    return section("at-init", "Closure at initialisation", kv_table(rows))


def width_section(report: Report) -> str:
    w = report.width_extrapolation
    if w is None:
        return section("width", "Width extrapolation", missing("Not computed for this model."))
    head = "<th>Width</th><th>Closure factor ‖r₀‖ / r*</th>"
    body = "".join(
        f"<tr><td class='num'>{fmt_number(width)}</td><td class='num'>{fmt_number(f)}</td></tr>"
        for width, f in zip(w.widths, w.factors, strict=False)
    )
    rows: list[Row] = [
        ("Log-log slope", fmt_number(w.slope), ""),
        ("Width where the factor reaches 1", fmt_number(w.width_to_close), "fit"),
        ("Method", esc(w.method), ""),
        ("Tier", esc(w.tier), esc(w.note)),
    ]
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return section("width", "Width extrapolation", table + kv_table(rows))


def pl_eps_section(report: Report) -> str:
    p = report.pl_eps
    if p is None:
        return section("pl-eps", "PL*_ε", missing("Not computed."))
    rows: list[Row] = [
        ("ε (smallest certified loss)", fmt_number(p.eps), "½ sum of squares"),
        ("Iterations to ε", fmt_number(p.iterations), "GD steps"),
        ("μ on that ball", fmt_number(p.mu), "(√λ_min(K(w₀)) − β_F ρ)²"),
        ("Ball radius ρ", fmt_number(p.radius), "PL* holds on B(w₀, ρ) where L ≥ ε"),
        ("Step size", fmt_number(p.step_size), "sum loss"),
        ("Rate", rate_cell(p.rate), ""),
        ("Tier", esc(p.tier) if p.tier else NA, ""),
        ("Largest ball scanned", fmt_number(p.radius_cap), "where the proven β_F holds"),
        ("Method", esc(p.method) or NA, ""),
    ]
    note = ""
    L0 = report.initial.loss
    if p.eps is not None and L0 > 0 and p.eps >= 0.99 * L0:
        note = (
            "<p class='note'>Here ε is within 1% of the initial loss "
            f"L₀ = {fmt_number(L0)}: PL*_ε certifies almost nothing for this model.</p>"
        )
    elif p.eps == 0:
        note = (
            "<p class='note'>ε = 0: the path-length bound keeps gradient descent inside the "
            "ball for ever, so exact interpolation is certified (the verdict uses it).</p>"
        )
    return section("pl-eps", "PL*_ε", kv_table(rows) + note)
