"""Pass/fail checks of a report for CI gates (``plcert ... --junit``, ``--min-rate``,
``--max-steps``).

The certified rate. With q the certified per-step contraction factor of the loss (the
report's ``gd.rate`` = 1 - eta mu when the certificate closes at w0, else ``path.rate`` from the
step t* where the path certificate closes), the theorem gives L_{t+1} <= q L_t: smaller q is
faster. The gates use the per-step decrease

    d = 1 - q = eta * mu = 1 / kappa        (the fraction of the loss removed per step)

so that a larger value is faster and ``--min-rate X`` reads as a minimum: it passes when
d >= X. Example: d = 1e-3 removes at least 0.1 % of the loss each step, so the loss falls by
a factor e within about 1000 steps.

Steps to the target loss eps (``gd.target_loss``): ``gd.iterations_to_target`` =
ceil(ln(L_0 / eps) / -ln q) when the certificate closes at w0; for a path certificate,
t* + ceil(ln(L_t* / eps) / -ln q) with L_t* = 1/2 ||r(w_t*)||^2 (the steps before t* are the
checking run's own). ``--max-steps N`` passes when that count is at most N.

A report that is not certified has no certified rate: both gates fail, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from plcore.certificate.predict_gd import iterations_to
from plcore.report.plots_base import closes_at_init
from plcore.report.schema import Report

GateName = Literal["certified", "rate", "steps"]


@dataclass(frozen=True)
class CertifiedRate:
    """The certified linear rate of a report and where it starts.

    Attributes:
        contraction: q, L_{t+1} <= q L_t from step ``from_step`` on.
        decrease: 1 - q = eta mu.
        from_step: 0 when the certificate closes at w0, else t* of the path certificate.
        steps_to_target: steps from w0 until the loss is certified below ``target_loss``.
        target_loss: eps, the report's ``gd.target_loss``.
        source: ``gd`` or ``path``: which section of the report q comes from.
    """

    contraction: float
    decrease: float
    from_step: int
    steps_to_target: int | None
    target_loss: float | None
    source: Literal["gd", "path"]


@dataclass(frozen=True)
class GateResult:
    """One check: its name, whether it passed, and a message with the numbers."""

    name: GateName
    passed: bool
    message: str


def certified_rate(report: Report) -> CertifiedRate | None:
    """The rate the verdict certifies (module docstring), or None when not certified."""
    if report.verdict != "certified":
        return None
    gd, path = report.gd, report.path
    eps = gd.target_loss
    if (closes_at_init(report) or path.certified_from_step is None) and gd.rate is not None:
        return CertifiedRate(gd.rate, 1.0 - gd.rate, 0, gd.iterations_to_target, eps, "gd")
    if path.certified_from_step is None or path.rate is None:
        return None
    t_star, q = path.certified_from_step, path.rate
    steps = None
    if eps is not None and path.residual_at_step is not None:
        after = iterations_to(0.5 * path.residual_at_step**2, eps, 1.0, 1.0 - q)
        steps = None if after is None else t_star + after
    return CertifiedRate(q, 1.0 - q, t_star, steps, eps, "path")


def evaluate_gates(
    report: Report, *, min_rate: float | None = None, max_steps: int | None = None
) -> list[GateResult]:
    """``certified``, then ``rate`` (when ``min_rate`` is given) and ``steps`` (when
    ``max_steps`` is given)."""
    rate = certified_rate(report)
    results = [_certified_gate(report)]
    if min_rate is not None:
        results.append(_rate_gate(report, rate, min_rate))
    if max_steps is not None:
        results.append(_steps_gate(report, rate, max_steps))
    return results


def _certified_gate(report: Report) -> GateResult:
    verdict = f"verdict {report.verdict} ({report.tier})"
    if report.verdict == "certified":
        return GateResult("certified", True, verdict)
    why = f": {report.reasons[0]}" if report.reasons else ""
    return GateResult("certified", False, verdict + why)


def _not_certified(report: Report, name: GateName) -> GateResult:
    return GateResult(
        name, False, f"no certified rate: the verdict is {report.verdict} ({report.tier})"
    )


def _rate_gate(report: Report, rate: CertifiedRate | None, min_rate: float) -> GateResult:
    if rate is None:
        return _not_certified(report, "rate")
    where = "from w0" if rate.source == "gd" else f"from step t* = {rate.from_step}"
    passed = rate.decrease >= min_rate
    message = (
        f"certified per-step loss decrease 1 - rate = eta*mu = {rate.decrease:.6g} "
        f"{'>=' if passed else '<'} --min-rate {min_rate:.6g} "
        f"({rate.source}.rate = {rate.contraction:.12g}: L_t+1 <= rate * L_t {where})"
    )
    return GateResult("rate", passed, message)


def _steps_gate(report: Report, rate: CertifiedRate | None, max_steps: int) -> GateResult:
    if rate is None:
        return _not_certified(report, "steps")
    if rate.steps_to_target is None:
        return GateResult(
            "steps", False, f"no step count to the target loss {_g(rate.target_loss)} is certified"
        )
    passed = rate.steps_to_target <= max_steps
    message = (
        f"certified steps to loss {_g(rate.target_loss)}: {rate.steps_to_target} "
        f"{'<=' if passed else '>'} --max-steps {max_steps}"
    )
    if rate.source == "path":
        message += f" (the first {rate.from_step} are the checking run's)"
    return GateResult("steps", passed, message)


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"
