"""The report as one self-contained HTML page (inline CSS and PNG data URIs, no scripts, no URLs).

Order: the verdict first, then what it means in words, then the numbers with their brackets and
methods, the figures, and finally conventions and provenance. Every string that can come from a
user (model description, dataset name, reasons, methods, options) goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence

from plcore.report.plots import Plot, all_plots, closes_at_init
from plcore.report.schema import LowerBracket, Report, UpperBracket

NA = '<span class="na" title="not available">—</span>'

_VERDICT_TEXT = {
    "certified": "Certified",
    "not_certified": "Not certified",
    "inconclusive": "Inconclusive",
}
_TIER_TEXT = {
    "rigorous": "rigorous: proven bounds",
    "estimated": "estimated: sampled constants",
}


def _e(text: object) -> str:
    """Escape a user-controlled value for HTML text and attribute context."""
    return html.escape(str(text), quote=True)


def fmt_number(x: float | int | None) -> str:
    """A number to 4 significant digits as HTML; ``None``, NaN and inf become a dash."""
    if x is None or isinstance(x, bool):
        return NA if x is None else ("yes" if x else "no")
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return NA
    return f"{x:.4g}"


def _fmt_bool(x: bool | None) -> str:
    if x is None:
        return NA
    return '<span class="yes">yes</span>' if x else '<span class="no">no</span>'


def _n(x: float | int | None) -> str:
    """Plain-text form of a number for sentences (no markup)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return str(x) if isinstance(x, int) else f"{x:.4g}"


Row = tuple[str, str, str]


def _rate_cell(x: float | None) -> str:
    return NA if x is None or not math.isfinite(x) else _e(fmt_rate(x))


def _table(rows: Iterable[Row], *, head: Sequence[str] = ("Quantity", "Value", "Notes")) -> str:
    """A table from already-escaped HTML cells."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(
        f"<tr><td>{a}</td><td class='val'>{b}</td><td>{c}</td></tr>"
        if c
        else f"<tr><td>{a}</td><td class='val' colspan='2'>{b}</td></tr>"
        for a, b, c in rows
    )
    cols = '<colgroup><col style="width:36%"><col style="width:28%"><col></colgroup>'
    return f'<table class="kv">{cols}<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{title}</h2>{body}</section>'


def _missing(what: str) -> str:
    return f'<p class="missing">{what}</p>'


# ----------------------------------------------------------------------------------- verdict


def _verdict(report: Report) -> str:
    reasons = "".join(f"<li>{_e(r)}</li>" for r in report.reasons) or "<li>no reasons given</li>"
    desc = report.problem.model_description or "model"
    data = report.problem.dataset_name or "the given data"
    return (
        '<section id="verdict" class="verdict">'
        "<h2>Verdict</h2>"
        f'<div class="badges"><span class="badge verdict-{_e(report.verdict)}">'
        f"{_VERDICT_TEXT.get(report.verdict, _e(report.verdict))}</span>"
        f'<span class="badge tier tier-{_e(report.tier)}">'
        f"{_TIER_TEXT.get(report.tier, _e(report.tier))}</span></div>"
        f'<p class="subject">{_e(desc)} on {_e(data)}</p>'
        f'<ul class="reasons">{reasons}</ul></section>'
    )


def meaning_sentences(report: Report) -> list[str]:
    """The "What this means" paragraph as plain-language sentences (plain text, unescaped)."""
    gd, path, at = report.gd, report.path, report.at_init
    out: list[str] = []
    closes_at_init = (at.closes if at is not None else report.constants.radius_closes) and (
        gd.step_size is not None
    )
    if report.verdict == "certified" and (closes_at_init or path.certified_from_step is None):
        s = (
            f"Gradient descent with step η = {_n(gd.step_size)} on the sum loss "
            f"L = ½ Σ‖f(x) − y‖² (η = {_n(gd.step_size_mse_mean)} on the mean squared error) "
            f"converges to zero loss at a linear rate: L_t ≤ ({fmt_rate(gd.rate)})^t · L_0, "
            f"with L_0 = {_n(report.initial.loss)}."
        )
        out.append(s)
        if gd.iterations_to_target is not None:
            out.append(
                f"It reaches loss {_n(gd.target_loss)} within {gd.iterations_to_target} steps."
            )
        if report.constants.radius is not None:
            out.append(
                f"The weights never move further than R = {_n(report.constants.radius)} "
                "from their initial values, and a zero-loss solution exists inside that ball."
            )
    elif path.certified_from_step is not None:
        t_star = path.certified_from_step
        v = report.validation
        eta0 = v.step_size if v is not None else None
        if report.verdict == "certified":
            out.append(
                "Gradient descent from these initial weights reaches zero training loss, "
                f"along the run plcert carried out: step η = {_n(eta0)} for the first {t_star} "
                f"steps, then η = {_n(path.step_size)} (sum loss L = ½ Σ‖f(x) − y‖²)."
            )
        why = _why_not_at_init(report)
        out.append(f"The theorem does not apply at the initial weights w₀ because {why}.")
        loss_star = 0.5 * path.residual_at_step**2 if path.residual_at_step is not None else None
        out.append(
            f"It does apply at step t* = {t_star} of the checking run"
            + (f" (loss {_n(loss_star)})" if loss_star is not None else "")
            + f": from there, gradient descent with step η = {_n(path.step_size)} converges to "
            f"zero loss at rate L_t ≤ ({fmt_rate(path.rate)})^(t − t*) · L_t*"
            + (f", staying within {_n(path.radius)} of w_t*." if path.radius is not None else ".")
        )
        out.append(
            "The steps before t* are not covered by a bound: they are a computation that was "
            "run and checked, so the guarantee is for this run (same initial weights and step "
            "sizes), not for gradient descent with other step sizes from w₀."
        )
    elif report.verdict == "not_certified":
        if report.problem.overparameterization_ratio < 1:
            out.append(
                f"The model has fewer parameters (m = {report.problem.n_params}) than equations "
                f"(N = n·k = {report.problem.n_constraints}), so the tangent kernel is singular "
                "everywhere and the PL* condition cannot hold: gradient descent cannot be "
                "guaranteed to reach zero loss, and generally does not."
            )
        elif at is not None and not at.closes:
            out.append(
                f"The theorem does not apply at the initial weights w₀ because "
                f"{_why_not_at_init(report)}."
            )
            out.append(_run_never_closed(report))
            out.append("So convergence to zero loss is not certified.")
        else:
            out.append(
                "plcert found evidence against the PL* condition on every ball it checked, so "
                "convergence to zero loss is not certified (see the reasons above)."
            )
    else:
        out.append(
            "The evidence neither proves nor refutes convergence to zero loss: the theorem does "
            f"not apply at w₀ because {_why_not_at_init(report)}, and the checking run did not "
            "reach the point where it applies."
        )
        if path.steps_needed_estimate is not None:
            out.append(_run_never_closed(report))
    eps = report.pl_eps.eps if report.pl_eps is not None else None
    if report.verdict != "certified" and eps is not None and 0 < eps < report.initial.loss:
        assert report.pl_eps is not None
        out.append(
            f"The linear rate is still certified down to loss ε = {_n(report.pl_eps.eps)} "
            "(PL*_ε)"
            + (
                f", reached within {report.pl_eps.iterations} steps."
                if report.pl_eps.iterations is not None
                else "."
            )
        )
    plr = gd.planned_learning_rate
    if plr is not None:
        verdict = "safe" if plr.safe else "NOT certified safe"
        out.append(
            f"Your planned learning rate {_n(plr.learning_rate)} ({plr.convention} loss) is "
            f"{verdict}: {_n(plr.ratio_to_safe)} times the certified step."
        )
    if report.tier == "estimated":
        out.append(
            "The constants behind this verdict are estimates from sampled points (one-sided), "
            "not proven bounds: treat it as strong evidence, not a proof."
        )
    else:
        out.append("The verdict rests on proven bounds, up to floating-point rounding.")
    if not report.problem.smooth:
        out.append(
            "The model uses operations that are not twice differentiable (such as ReLU); the "
            "theory assumes smooth activations, so this result is heuristic."
        )
    return out


def _run_never_closed(report: Report) -> str:
    v, path = report.validation, report.path
    if v is None:
        return "No checking run was made to look for a later step where it applies."
    text = f"Along the checking run of {v.steps} steps it never started to apply"
    if path.steps_needed_estimate is not None:
        text += (
            f"; at its observed rate the run would need about {path.steps_needed_estimate} steps"
        )
    return text + "."


def fmt_rate(x: float | None) -> str:
    """A contraction factor; one within 1e-3 of 1 is written 1 − (1 − x) so it does not round
    to a bare 1."""
    if x is not None and math.isfinite(x) and 0.999 < x < 1:
        return f"1 − {1 - x:.4g}"
    return _n(x)


def _why_not_at_init(report: Report) -> str:
    at = report.at_init
    if at is None:
        return "the radius R = 2 L_F ‖r₀‖ / μ does not fit inside the ball the constants hold on"
    if at.factor is not None and at.residual_threshold is not None:
        return (
            f"the initial residual ‖r₀‖ = {_n(at.residual_norm)} is {_n(at.factor)} times the "
            f"threshold r* = {_n(at.residual_threshold)} below which the certificate closes"
        )
    if at.failing_inequality:
        return f"{at.failing_inequality} fails"
    return "the certified radius does not close"


def _meaning(report: Report) -> str:
    text = " ".join(_e(s) for s in meaning_sentences(report))
    return _section("meaning", "What this means", f'<p class="meaning">{text}</p>')


# ----------------------------------------------------------------------------------- numbers


def _problem(report: Report) -> str:
    p = report.problem
    rows: list[Row] = [
        ("Model", _e(p.model_description) or NA, _e(p.model_format)),
        ("Dataset", _e(p.dataset_name) or NA, ""),
        ("n (samples)", fmt_number(p.n_samples), ""),
        ("k (outputs per sample)", fmt_number(p.n_outputs), ""),
        ("m (parameters)", fmt_number(p.n_params), ""),
        ("N = n·k (equations)", fmt_number(p.n_constraints), ""),
        ("m / N", fmt_number(p.overparameterization_ratio), "PL* needs m ≥ N"),
        ("Activations", _e(", ".join(p.activations)) or NA, ""),
        ("Output activation", _e(p.output_activation or "none (linear)"), ""),
        ("Twice differentiable", _fmt_bool(p.smooth), "ReLU and similar are not"),
    ]
    return _section("problem", "Problem", _table(rows))


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
        f"<td>{_e(b.method)}</td></tr>"
    )


def _constants(report: Report) -> str:
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
        ("R ≤ ρ (radius closes)", _fmt_bool(c.radius_closes), "if yes, certified at w₀"),
        ("Tier of the closing constants", _e(c.radius_tier) if c.radius_tier else NA, ""),
    ]
    note = (
        "<p class='note'>A sampled estimate of a supremum is a lower estimate of it, and of an "
        "infimum an upper estimate; only a proven bound is one-sided in the safe direction.</p>"
    )
    return _section("constants", "Constants on the ball", table + note + _table(rows))


def _initial(report: Report) -> str:
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
        ("Kernel method", _e(i.kernel_method) or NA, ""),
    ]
    return _section("initial", "Quantities at initialisation", _table(rows))


def _gd(report: Report) -> str:
    g = report.gd
    rows: list[Row] = [
        ("Step size η (sum loss)", fmt_number(g.step_size), "1 / (L_F² + β_F ‖r₀‖)"),
        ("Step size on the MSE", fmt_number(g.step_size_mse_mean), "n η / 2"),
        ("Condition number κ", fmt_number(g.kappa), "1 / (η μ)"),
        ("Rate 1 − η μ", _rate_cell(g.rate), "L_t ≤ rate^t L₀"),
        ("Target loss", fmt_number(g.target_loss), "½ sum of squares"),
        ("Iterations to target", fmt_number(g.iterations_to_target), "⌈ln(L₀/ε) / −ln(rate)⌉"),
    ]
    body = _table(rows)
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
        body += "<h3>Planned learning rate</h3>" + _missing("No planned learning rate was given.")
    else:
        prow: list[Row] = [
            ("Learning rate", fmt_number(plr.learning_rate), _e(plr.convention) + " convention"),
            ("Same step on the sum loss", fmt_number(plr.step_size_sum), ""),
            ("Ratio to the certified step", fmt_number(plr.ratio_to_safe), "≤ 1 is safe"),
            ("Safe", _fmt_bool(plr.safe), _e(plr.message)),
        ]
        body += "<h3>Planned learning rate</h3>" + _table(prow)
    return _section("gd", "Gradient descent", body)


def _sgd(report: Report) -> str:
    if not report.sgd:
        return _section("sgd", "SGD", _missing("No mini-batch sizes were requested."))
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
                _rate_cell(s.rate),
                fmt_number(s.radius),
                fmt_number(s.confidence),
                fmt_number(s.iterations_to_target),
                fmt_number(s.smoothness),
            )
        )
        + f"<td>{_e(s.method) if s.method else NA}</td>"
        + "</tr>"
        for s in report.sgd
    )
    derived = any(s.derived for s in report.sgd)
    note = (
        "<p class='note'>η* = μ / (β (n β + μ (s − 1))); E[L_{t+1}] ≤ (1 − μ s η / n) E[L_t] "
        "with probability 1 − δ on a ball of radius R_SGD = 2 n √(2 β L₀) / (μ δ)."
        + (" Derived in docs/theory.md, not printed in the paper." if derived else "")
        + "</p>"
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return _section("sgd", "SGD", table + note)


def _validation(report: Report) -> str:
    v = report.validation
    if v is None:
        return _section("validation", "Checking run", _missing("No checking run was made."))
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
            _fmt_bool(v.bound_held),
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
    return _section("validation", "Checking run", _table(rows))


def _path(report: Report) -> str:
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
        ("Rate from t*", _rate_cell(p.rate), "L_t ≤ rate^(t − t*) L_t*"),
        ("Bound held after t*", _fmt_bool(p.bound_held_after), "checked on the rest of the run"),
        ("Steps needed (estimate)", fmt_number(p.steps_needed_estimate), "— unless never reached"),
        ("Tier", _e(p.tier) if p.tier else NA, "rigorous: proven β_F; estimated: sampled"),
        (
            "Full checks along the run",
            fmt_number(p.checked_steps),
            "steps where K and H_F were computed",
        ),
    ]
    note = f"<p class='note'>{_e(p.note)}</p>" if p.note else ""
    return _section("path", "Path certificate", _table(rows) + note)


def _at_init(report: Report) -> str:
    a = report.at_init
    if a is None:
        return _section("at-init", "Closure at initialisation", _missing("Not computed."))
    rows: list[Row] = [
        ("Closes at w₀", _fmt_bool(a.closes), ""),
        ("Failing inequality", _e(a.failing_inequality) if a.failing_inequality else NA, ""),
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
            (_e(a.beta_kind) + (" (analytic bound)" if a.beta_kind == "proven" else " (sampled)"))
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
    return _section("at-init", "Closure at initialisation", _table(rows))


def _width(report: Report) -> str:
    w = report.width_extrapolation
    if w is None:
        return _section("width", "Width extrapolation", _missing("Not computed for this model."))
    head = "<th>Width</th><th>Closure factor ‖r₀‖ / r*</th>"
    body = "".join(
        f"<tr><td class='num'>{fmt_number(width)}</td><td class='num'>{fmt_number(f)}</td></tr>"
        for width, f in zip(w.widths, w.factors, strict=False)
    )
    rows: list[Row] = [
        ("Log-log slope", fmt_number(w.slope), ""),
        ("Width where the factor reaches 1", fmt_number(w.width_to_close), "fit"),
        ("Method", _e(w.method), ""),
    ]
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return _section("width", "Width extrapolation", table + _table(rows))


def _pl_eps(report: Report) -> str:
    p = report.pl_eps
    if p is None:
        return _section("pl-eps", "PL*_ε", _missing("Not computed."))
    rows: list[Row] = [
        ("ε (smallest certified loss)", fmt_number(p.eps), "½ sum of squares"),
        ("Iterations to ε", fmt_number(p.iterations), "GD steps"),
        ("μ on that ball", fmt_number(p.mu), "(√λ_min(K(w₀)) − β_F ρ)²"),
        ("Ball radius ρ", fmt_number(p.radius), "PL* holds on B(w₀, ρ) where L ≥ ε"),
        ("Step size", fmt_number(p.step_size), "sum loss"),
        ("Rate", _rate_cell(p.rate), ""),
        ("Tier", _e(p.tier) if p.tier else NA, ""),
        ("Method", _e(p.method) or NA, ""),
    ]
    note = ""
    L0 = report.initial.loss
    if p.eps is not None and L0 > 0 and p.eps >= 0.99 * L0:
        note = (
            "<p class='note'>Here ε is within 1% of the initial loss "
            f"L₀ = {fmt_number(L0)}: PL*_ε certifies almost nothing for this model.</p>"
        )
    elif p.eps == 0:
        note = "<p class='note'>ε = 0: exact interpolation is certified.</p>"
    return _section("pl-eps", "PL*_ε", _table(rows) + note)


def _plots(plots: list[Plot]) -> str:
    if not plots:
        return _section("plots", "Plots", _missing("No data to plot."))
    figs = "".join(
        f'<figure id="plot-{p.key}"><img src="{p.data_uri}" alt="{_e(p.title)}">'
        f"<figcaption><b>{_e(p.title)}.</b> {_e(p.caption)}</figcaption></figure>"
        for p in plots
    )
    return _section("plots", "Plots", f'<div class="plots">{figs}</div>')


def _conventions(report: Report) -> str:
    if not report.conventions:
        return _section("conventions", "Conventions", _missing("None recorded."))
    rows: list[Row] = [(_e(k), "", _e(v)) for k, v in report.conventions.items()]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, _, v in rows)
    return _section("conventions", "Conventions", f"<dl>{items}</dl>")


def _provenance(report: Report) -> str:
    p = report.provenance
    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(p.versions.items()))
    options = _e(json.dumps(p.options, sort_keys=True, default=str)) if p.options else ""
    rows: list[Row] = [
        ("Model SHA-256", f"<code>{_e(p.model_sha256)}</code>", ""),
        ("Data SHA-256", f"<code>{_e(p.data_sha256)}</code>", ""),
        ("Versions", versions or NA, ""),
        ("Device", _e(p.device), ""),
        ("Seed", fmt_number(p.seed), ""),
        ("Budget", _e(p.budget) or NA, ""),
        ("Options", f"<code>{options}</code>" if options else NA, ""),
        ("Elapsed", fmt_number(p.elapsed_s) + " s", ""),
        ("Created", _e(p.created_at) or NA, ""),
        ("Schema version", _e(report.schema_version), ""),
    ]
    return _section("provenance", "Provenance", _table(rows))


_CSS = """
:root { --ok: #1e8449; --bad: #b03a2e; --mid: #b9770e; --ink: #1c2833; --muted: #5d6d7e; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  margin: 0; background: #f4f6f7; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 1px solid #d5d8dc; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.verdict { background: #fbfcfc; border: 1px solid #d5d8dc; border-radius: 8px;
  padding: 6px 18px 10px; }
.verdict h2 { border: 0; margin-top: 10px; }
.badges { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
.badge { display: inline-block; border-radius: 6px; padding: 6px 16px; font-weight: 600; }
.verdict-certified, .verdict-not_certified, .verdict-inconclusive { font-size: 26px; color: #fff; }
.verdict-certified { background: var(--ok); }
.verdict-not_certified { background: var(--bad); }
.verdict-inconclusive { background: var(--mid); }
.tier { font-size: 14px; border: 2px solid var(--muted); color: var(--muted); }
.tier-rigorous { border-color: var(--ok); color: var(--ok); }
.subject { color: var(--muted); margin: 10px 0 4px; overflow-wrap: anywhere; }
.reasons li { margin: 2px 0; overflow-wrap: anywhere; }
.meaning { font-size: 16px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 14px; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #e5e8e8;
  vertical-align: top; overflow-wrap: break-word; }
th { background: #eaf2f8; font-weight: 600; }
tbody tr:nth-child(even) { background: #fbfcfc; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv { table-layout: fixed; }
td.val { font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.na { color: #95a5a6; cursor: help; }
.yes { color: var(--ok); font-weight: 600; }
.no { color: var(--bad); font-weight: 600; }
.missing, .note { color: var(--muted); font-size: 13.5px; }
.warn { background: #fef5e7; border-left: 4px solid var(--mid); padding: 6px 10px;
  font-size: 14px; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid #e5e8e8; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; font-size: 14px; }
dt { font-weight: 600; } dd { margin: 0; overflow-wrap: anywhere; }
code { font-size: 12.5px; overflow-wrap: anywhere; white-space: normal; }
footer { color: var(--muted); font-size: 12px; margin-top: 28px; }
"""


def render_html(report: Report) -> str:
    """The whole report as one self-contained HTML page (no scripts, no external resources)."""
    title = (
        f"plcert report: {_VERDICT_TEXT.get(report.verdict, report.verdict)} "
        f"({report.problem.model_description or 'model'})"
    )
    version = report.provenance.versions.get("plcert", "")
    sections = [
        _verdict(report),
        _meaning(report),
        _plots(all_plots(report)),
        _problem(report),
        _constants(report),
        _initial(report),
        _gd(report),
        _sgd(report),
        _validation(report),
        _path(report),
        _at_init(report),
        _width(report),
        _pl_eps(report),
        _conventions(report),
        _provenance(report),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        "<body><main>"
        "<h1>PL* convergence certificate</h1>"
        + "".join(sections)
        + f"<footer>Generated by plcert {_e(version)}; report schema {_e(report.schema_version)}."
        "</footer></main></body></html>\n"
    )
