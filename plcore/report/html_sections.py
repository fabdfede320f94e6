"""The report's number tables: problem, constants, initial quantities, gradient descent, SGD and
the checking run (the closure tables are in :mod:`plcore.report.html_closure`)."""

from __future__ import annotations

import math

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
from plcore.report.plots_base import closes_at_init
from plcore.report.schema import LowerBracket, Report, UpperBracket


def problem_section(report: Report) -> str:
    p = report.problem
    rows: list[Row] = [
        ("Model", esc(p.model_description) or NA, esc(p.model_format)),
        ("Dataset", esc(p.dataset_name) or NA, ""),
        ("n (samples)", fmt_number(p.n_samples), ""),
        ("k (outputs per sample)", fmt_number(p.n_outputs), ""),
        ("m (parameters)", fmt_number(p.n_params), ""),
        ("N = n·k (equations)", fmt_number(p.n_constraints), ""),
        ("m / N", fmt_number(p.overparameterization_ratio), "PL* needs m ≥ N"),
        ("Activations", esc(", ".join(p.activations)) or NA, ""),
        ("Output activation", esc(p.output_activation or "none (linear)"), ""),
        ("Twice differentiable", fmt_bool(p.smooth), "ReLU and similar are not"),
    ]
    return section("problem", "Problem", kv_table(rows))


def _bracket_row(symbol: str, meaning: str, b: UpperBracket | LowerBracket) -> str:
    if isinstance(b, UpperBracket):
        est, bound = b.estimate, b.upper_bound
        bracket = (
            f"{fmt_number(est)} ≤ {symbol} ≤ {fmt_number(bound) if bound is not None else '?'}"
        )
    else:
        est, bound = b.estimate, b.lower_bound
        bracket = (
            f"{fmt_number(bound) if bound is not None else '?'} ≤ {symbol} ≤ {fmt_number(est)}"
        )
    return (
        f"<tr><td>{symbol}</td><td>{meaning}</td><td class='num'>{fmt_number(est)}</td>"
        f"<td class='num'>{fmt_number(bound)}</td><td class='num'>{bracket}</td>"
        f"<td>{esc(b.method)}</td></tr>"
    )


def constants_section(report: Report) -> str:
    c = report.constants
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Constant", "Meaning", "Sampled estimate", "Proven bound", "Bracket", "Method")
    )
    body = (
        _bracket_row("L_F", "sup ‖J(w)‖₂ on the ball", c.L_F)
        + _bracket_row("β_F", "Lipschitz constant of J (≤ sup ‖H_F‖)", c.beta_F)
        + _bracket_row("μ", "inf λ_min(K(w)) on the ball (½-normalized PL*)", c.mu)
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    rows: list[Row] = [
        ("Unnormalized PL* constant 2μ", fmt_number(c.mu_unnormalized), "‖∇L‖² ≥ 2μ L"),
        (
            "Radius R = 2 L_F ‖r₀‖ / μ",
            fmt_number(c.radius),
            "distance ‖w − w₀‖ in weight space; GD stays within R of w₀ when R ≤ ρ",
        ),
        (
            "Search radius ρ",
            fmt_number(c.search_radius),
            "the constants above hold on the ball B(w₀, ρ)",
        ),
        ("R ≤ ρ (radius closes)", fmt_bool(c.radius_closes), "if yes, certified at w₀"),
        ("Tier of the closing constants", esc(c.radius_tier) if c.radius_tier else NA, ""),
    ]
    note = (
        "<p class='note'>A sampled estimate of a supremum is a lower estimate of it, and of an "
        "infimum an upper estimate; only a proven bound is one-sided in the safe direction.</p>"
    )
    return section("constants", "Constants on the ball", table + note + kv_table(rows))


def initial_section(report: Report) -> str:
    i = report.initial
    rows: list[Row] = [
        ("Loss L(w₀) = ½‖r₀‖²", fmt_number(i.loss), "sum of squares with ½"),
        ("Residual norm ‖r₀‖", fmt_number(i.residual_norm), ""),
        ("λ_min(K(w₀))", fmt_number(i.lambda_min), "eigh, float64"),
        ("λ_max(K(w₀))", fmt_number(i.lambda_max), "eigh, float64"),
        ("Condition number λ_max / λ_min", fmt_number(i.condition_number), "— if singular"),
        ("‖J(w₀)‖₂", fmt_number(i.jacobian_norm), "√λ_max"),
        (
            "‖H_F(w₀)‖",
            fmt_number(i.hessian_norm),
            "alternating power method"
            + (
                f"; converged: {'yes' if i.hessian_norm_converged else 'no'}"
                if i.hessian_norm_converged is not None
                else ""
            ),
        ),
        ("Spread over restarts", fmt_number(i.hessian_norm_spread), "relative"),
        ("max_i ‖Hess F_i(w₀)‖₂", fmt_number(i.max_output_hessian_norm), "paper's weaker form"),
        ("Kernel method", esc(i.kernel_method) or NA, ""),
    ]
    return section("initial", "Quantities at initialisation", kv_table(rows))


def gd_section(report: Report) -> str:
    g = report.gd
    rows: list[Row] = [
        ("Step size η (sum loss)", fmt_number(g.step_size), "1 / (L_F² + β_F ‖r₀‖)"),
        ("Step size on the MSE", fmt_number(g.step_size_mse_mean), "n η / 2"),
        ("Condition number κ", fmt_number(g.kappa), "1 / (η μ)"),
        ("Rate 1 − η μ", rate_cell(g.rate), "L_t ≤ rate^t L₀"),
        ("Target loss", fmt_number(g.target_loss), "½ sum of squares"),
        ("Iterations to target", fmt_number(g.iterations_to_target), "⌈ln(L₀/ε) / −ln(rate)⌉"),
    ]
    body = kv_table(rows)
    if g.step_size is not None and not closes_at_init(report):
        body = (
            "<p class='warn'><b>Not certified from w₀.</b> The certificate does not close at the "
            "initial weights, so the step size, rate and step count below come from the sampled "
            "constants of the ball that came closest and carry no guarantee"
            + (
                "; the guaranteed rate is the path certificate's, from step t* = "
                f"{report.path.certified_from_step} (see below)."
                if report.path.certified_from_step
                else "."
            )
            + "</p>"
            + body
        )
    plr = g.planned_learning_rate
    if plr is None:
        body += "<h3>Planned learning rate</h3>" + missing("No planned learning rate was given.")
    else:
        prow: list[Row] = [
            ("Learning rate", fmt_number(plr.learning_rate), esc(plr.convention) + " convention"),
            ("Same step on the sum loss", fmt_number(plr.step_size_sum), ""),
            ("Ratio to the certified step", fmt_number(plr.ratio_to_safe), "≤ 1 is safe"),
            ("Safe", fmt_bool(plr.safe), esc(plr.message)),
        ]
        body += "<h3>Planned learning rate</h3>" + kv_table(prow)
    return section("gd", "Gradient descent", body)


def sgd_section(report: Report) -> str:
    if not report.sgd:
        return section("sgd", "SGD", missing("No mini-batch sizes were requested."))
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "Batch size s",
            "Step η*",
            "Step on the MSE",
            "Rate",
            "Radius R_SGD",
            "Confidence 1 − δ",
            "Iterations to target",
            "Smoothness β",
            "Method",
        )
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{cell}</td>"
            for cell in (
                fmt_number(s.batch_size),
                fmt_number(s.step_size),
                fmt_number(s.step_size_mse_mean),
                rate_cell(s.rate),
                fmt_number(s.radius),
                fmt_number(s.confidence),
                fmt_number(s.iterations_to_target),
                fmt_number(s.smoothness),
            )
        )
        + f"<td>{esc(s.method) if s.method else NA}</td>"
        + "</tr>"
        for s in report.sgd
    )
    derived = any(s.derived for s in report.sgd)
    note = (
        "<p class='note'>η* = μ / (β (n β + μ (s − 1))); E[L_{t+1}] ≤ (1 − μ s η / n) E[L_t] "
        "with probability 1 − δ on a ball of radius R_SGD = 2 n √(2 β L₀) / (μ δ)."
        + (" Derived in docs/theory.md, not printed in the paper." if derived else "")
        + (
            " <strong>A prediction whose hypotheses are not verified</strong>: the guarantee "
            "needs PL* and smoothness on B(w₀, R_SGD), but μ and β_F come from the gradient "
            "descent ball, which R_SGD usually exceeds many times."
            if any(not s.hypotheses_verified for s in report.sgd)
            else ""
        )
        + "</p>"
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return section("sgd", "SGD", table + note)


def validation_section(report: Report) -> str:
    v = report.validation
    if v is None:
        return section("validation", "Checking run", missing("No checking run was made."))
    final = v.losses[-1] if v.losses else None
    stored = (
        f"{len(v.losses)} of the {v.steps + 1} iterates stored for the plots"
        if v.recorded_steps
        else ""
    )
    checked = "checked only when the certificate closes at w₀"
    ratios = [q for q in v.pl_ratios if q is not None and math.isfinite(q)]
    mu_est = report.constants.mu.estimate
    rows: list[Row] = [
        ("Steps", fmt_number(v.steps), stored),
        ("Step size η", fmt_number(v.step_size), "sum loss, from step 0"),
        (
            "Step size from the switch on",
            fmt_number(v.step_size_after_switch),
            "the path certificate's step"
            + (
                f", used from step {v.step_size_switched_at}"
                if v.step_size_switched_at is not None
                else ""
            ),
        ),
        ("Initial loss L₀", fmt_number(v.losses[0] if v.losses else None), "½ sum of squares"),
        (f"Final loss L_{v.steps}", fmt_number(final), "½ sum of squares"),
        (
            "Bound held at every step",
            fmt_bool(v.bound_held),
            "L_t ≤ (1 − η μ)^t L₀" + ("" if v.bound_held is not None else f"; {checked}"),
        ),
        ("First violation step", fmt_number(v.first_violation_step), "— if none"),
        ("Max distance from w₀", fmt_number(v.max_distance_from_init), "max_t ‖w_t − w₀‖"),
        ("Radius R", fmt_number(v.radius), "— unless the certificate closes at w₀"),
        (
            "PL ratio ‖∇L‖² / (2 L): first, last",
            (fmt_number(ratios[0]) + ", " + fmt_number(ratios[-1])) if ratios else NA,
            "at the stored steps; ≥ λ_min(K(w_t))",
        ),
        (
            "Smallest PL ratio over the run",
            fmt_number(v.min_pl_ratio),
            "≥ μ wherever w_t lies inside the ball"
            + (f" (μ estimate {fmt_number(mu_est)})" if mu_est is not None else ""),
        ),
    ]
    if v.sgd_losses:
        rows.append(
            (
                f"SGD final loss (s = {fmt_number(v.sgd_batch_size)})",
                fmt_number(v.sgd_losses[-1]),
                "",
            )
        )
    return section("validation", "Checking run", kv_table(rows))


PARAMETER_ROWS_SHOWN = 20


def _parameter_row(name: str, shape: list[int], count: int, trainable: bool) -> str:
    shape_text = "×".join(str(s) for s in shape) if shape else "scalar"
    status = '<span class="yes">trainable</span>' if trainable else '<span class="no">frozen</span>'
    css = "" if trainable else " class='frozen'"
    return (
        f"<tr{css}><td><code>{esc(name)}</code></td><td class='num'>{esc(shape_text)}</td>"
        f"<td class='num'>{fmt_number(count)}</td><td>{status}</td></tr>"
    )


def parameters_section(report: Report) -> str:
    """The parameter tensors: name, shape, count and whether they were differentiated.

    The first :data:`PARAMETER_ROWS_SHOWN` rows are shown; the rest sit in a ``<details>`` element
    (collapsed, no script needed) whose summary says how many more there are.
    """
    params = report.parameters
    if not params:
        return section("parameters", "Parameters", missing("No parameter list recorded."))
    n_train = sum(p.count for p in params if p.trainable)
    n_frozen = sum(p.count for p in params if not p.trainable)
    n_frozen_tensors = sum(1 for p in params if not p.trainable)
    head = "".join(f"<th>{h}</th>" for h in ("Name", "Shape", "Count", "Status"))
    rows = [_parameter_row(p.name, p.shape, p.count, p.trainable) for p in params]

    def table(body: list[str]) -> str:
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    body = table(rows[:PARAMETER_ROWS_SHOWN])
    rest = rows[PARAMETER_ROWS_SHOWN:]
    if rest:
        body += (
            f"<details><summary>{len(rest)} more parameter tensors</summary>{table(rest)}</details>"
        )
    note = (
        f"<p class='note'>{len(params)} tensors: {fmt_number(n_train)} trainable entries "
        f"(w, differentiated); {fmt_number(n_frozen)} frozen entries in {n_frozen_tensors} "
        "tensors (held fixed, not part of w).</p>"
    )
    return section("parameters", "Parameters", note + body)
