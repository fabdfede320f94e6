"""Plain text and small HTML pieces of the report page: escaping, number formatting, the table,
section and "missing" helpers, and the "What this means" sentences.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

from plcore.report.schema import Report

NA = '<span class="na" title="not available">—</span>'


def esc(text: object) -> str:
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


def fmt_bool(x: bool | None) -> str:
    if x is None:
        return NA
    return '<span class="yes">yes</span>' if x else '<span class="no">no</span>'


def _n(x: float | int | None) -> str:
    """Plain-text form of a number for sentences (no markup)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return str(x) if isinstance(x, int) else f"{x:.4g}"


Row = tuple[str, str, str]


def rate_cell(x: float | None) -> str:
    return NA if x is None or not math.isfinite(x) else esc(fmt_rate(x))


def kv_table(rows: Iterable[Row], *, head: Sequence[str] = ("Quantity", "Value", "Notes")) -> str:
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


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{title}</h2>{body}</section>'


def missing(what: str) -> str:
    return f'<p class="missing">{what}</p>'


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
