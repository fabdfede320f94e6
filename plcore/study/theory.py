"""What the theory expects of a width study, and the study's reasons (docs/theory.md, "Width
study").

* NTK parameterization, linear output, smooth activation: ||H_F(w0)|| = O~(width^-1/2)
  (THEORY.md section 5): expected log-log slope -1/2. The O~ hides a sqrt(log width) from the
  largest of the W output weights that multiply the activation's second derivative, so
  finite-width fits come out a little flatter than -1/2.
* An output nonlinearity phi, f = phi(g): Hess f = phi'(g) Hess g + phi''(g) grad g grad g^T.
  The first term shrinks like Hess g; the second is a rank-one matrix of norm
  |phi''(g)| ||grad g||^2 = |phi''(g)| K^g(x, x), and the kernel of g converges to a nonzero
  limit, so ||H_F|| = Theta(1): expected slope 0.
* Standard parameterization: the kernel itself grows with the width; no slope is predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from plcore.kernel.infinite_width import infinite_width_ntk
from plcore.models.spec import validate_spec
from plcore.models.spec_schema import NONSMOOTH_ACTIVATIONS, MLPSpec
from plcore.report.study_schema import SlopeFit, StudyKind, StudyMode, StudyRow
from plcore.study.fit import slope_text

CLOSED_FORM_ACTIVATIONS = ("erf", "relu")
"""Hidden activations with a closed-form infinite-width NTK (plcore.kernel.infinite_width)."""

# phi'' is zero everywhere (identity) or almost everywhere (relu): no Theta(1) term.
_LINEAR_LIKE_OUTPUTS = ("identity", "relu")


def output_activation(spec: Mapping[str, Any]) -> str | None:
    """The activation applied after the output layer (None: a linear output).

    For a layer list: an activation layer after the last top-level linear / conv2d layer.
    """
    parsed = validate_spec(spec)
    if isinstance(parsed, MLPSpec):
        return parsed.output_activation
    items = parsed.model_dump(mode="json")["layers"]
    idx = [i for i, it in enumerate(items) if it["type"] in ("linear", "conv2d")]
    after = items[idx[-1] + 1 :] if idx else []
    acts = [it["name"] for it in after if it["type"] == "activation"]
    return acts[-1] if acts else None


def hidden_activations(spec: Mapping[str, Any]) -> list[str]:
    parsed = validate_spec(spec)
    if isinstance(parsed, MLPSpec):
        return [parsed.activation] if parsed.widths else []

    def walk(items: list[dict[str, Any]]) -> list[str]:
        out: list[str] = []
        for it in items:
            if it["type"] == "activation":
                out.append(it["name"])
            elif it["type"] == "residual":
                out += walk(it["layers"])
        return out

    return walk(parsed.model_dump(mode="json")["layers"])


def expected_slope(spec: Mapping[str, Any]) -> float | None:
    """-0.5 (NTK, linear output), 0.0 (a curved output activation), None (standard)."""
    parsed = validate_spec(spec)
    out = output_activation(spec)
    if out is not None and out not in _LINEAR_LIKE_OUTPUTS:
        return 0.0
    if parsed.parameterization != "ntk":
        return None
    return -0.5


def infinite_width_lambda_min(spec: Mapping[str, Any], X: torch.Tensor) -> tuple[float | None, str]:
    """(lambda_min of the infinite-width NTK Theta (x) I_k on X, how it was obtained).

    A closed form exists for the MLP shorthand with NTK parameterization, a linear output and
    an erf or relu hidden activation (:func:`plcore.kernel.infinite_width.infinite_width_ntk`);
    otherwise (None, why not).
    """
    parsed = validate_spec(spec)
    if not isinstance(parsed, MLPSpec):
        return None, "no closed form: the infinite-width NTK is implemented for MLP specs"
    if parsed.parameterization != "ntk":
        return None, "no infinite-width limit of K(w0) under standard parameterization"
    if parsed.output_activation is not None:
        return None, (
            f"no closed form with the output activation {parsed.output_activation} (K depends "
            "on the random output pre-activation)"
        )
    if parsed.widths and parsed.activation not in CLOSED_FORM_ACTIVATIONS:
        return None, (
            f"no closed-form Gaussian expectations for {parsed.activation} (only for "
            f"{' and '.join(CLOSED_FORM_ACTIVATIONS)})"
        )
    Xc = X.detach().to(device="cpu", dtype=torch.float64).reshape(X.shape[0], -1)
    theta = infinite_width_ntk(
        Xc,
        hidden_layers=len(parsed.widths),
        activation=parsed.activation if parsed.widths else "erf",  # type: ignore[arg-type]
        weight_std=parsed.weight_std,
        bias_std=parsed.bias_std if parsed.bias else 0.0,
        output_dim=parsed.output_dim,
    )
    lam = max(float(torch.linalg.eigvalsh(theta)[0]), 0.0)
    return lam, (
        f"closed-form infinite-width NTK ({parsed.activation if parsed.widths else 'linear'}, "
        f"{len(parsed.widths)} hidden layers; Jacot et al. 2018, Lee et al. 2019), lambda_min by "
        "eigh"
    )


def study_reasons(
    spec: Mapping[str, Any],
    kind: StudyKind,
    mode: StudyMode,
    slope: SlopeFit,
    rows: Sequence[StudyRow],
    drift_decreasing: bool | None,
    smallest_certified: int | None,
) -> list[str]:
    """The study's reasons: what the slope means for this architecture, the drift, the
    smallest certified width, and what the numbers are (estimates)."""
    reasons: list[str] = []
    fitted = _fitted(slope)
    out = output_activation(spec)
    parsed = validate_spec(spec)
    if kind == "depth":
        reasons.append(
            "depth study (descriptive): at a fixed width ||H_F(w0)|| changes with the number of "
            f"hidden layers; the theory predicts no exponent for it. Log-log slope {fitted}"
        )
    elif out is not None and out not in _LINEAR_LIKE_OUTPUTS:
        reasons.append(
            f"the output activation {out} keeps ||H_F(w0)|| of order 1 at every width, so the "
            f"slope is near 0 (fitted {fitted}): for f = {out}(g), Hess f = {out}'(g) Hess g + "
            f"{out}''(g) grad g grad g^T; the first term shrinks like width^-1/2, but the "
            f"second has norm |{out}''(g)| ||grad g||^2 = |{out}''(g)| K_g(x, x), and the kernel "
            "K_g of the pre-activation converges to a nonzero limit while g stays of order 1, "
            "so it does not shrink with width (docs/theory.md, 'Width study')"
        )
    elif parsed.parameterization != "ntk":
        reasons.append(
            "standard parameterization: the tangent kernel itself grows with the width, and "
            f"no Hessian-norm exponent is predicted (fitted slope {fitted})"
        )
    else:
        inside = _contains(slope, -0.5)
        verdict = (
            "the interval contains -1/2"
            if inside
            else "the interval does not contain -1/2"
            if inside is False
            else "no interval (too few points)"
        )
        reasons.append(
            "NTK parameterization with a linear output: ||H_F(w0)|| = O~(width^-1/2) (THEORY.md "
            f"section 5), expected slope -0.5; fitted {fitted}: {verdict}. The O~ hides a "
            "sqrt(log width) factor (the largest output weight), so finite widths fit a little "
            "flatter than -1/2"
        )
    bad = sorted(set(hidden_activations(spec)) & set(NONSMOOTH_ACTIVATIONS))
    if bad:
        reasons.append(
            f"{', '.join(bad)} is not twice differentiable: the Hessian norm ignores its kinks, "
            "so the scaling is heuristic"
        )
    if drift_decreasing is not None and kind == "width":
        trend = (
            "decreases from each width to the next (mean over seeds): the kernel stays closer "
            "to constant as the network widens"
            if drift_decreasing
            else "does not decrease from each width to the next (mean over seeds): these "
            "widths are not yet in the lazy (nearly constant kernel) regime"
        )
        reasons.append(f"the relative kernel drift ||K(w_T) - K(w0)||_F / ||K(w0)||_F {trend}")
    if mode == "certify" and kind == "width":
        if smallest_certified is not None:
            reasons.append(
                f"smallest certified width: {smallest_certified} (every seed certified there)"
            )
        else:
            reasons.append("no width was certified for every seed")
    if mode == "quantities":
        reasons.append(
            "quantities mode: no certification ran (mu, R and verdicts are null); w_T comes "
            "from a GD run with the step 1 / (||J0||^2 + ||H_F(w0)|| ||r0||)"
        )
    unconverged = sum(1 for r in rows if r.hessian_norm_converged is False)
    reasons.append(
        "||H_F(w0)|| is the alternating power method's value, a lower estimate of the tensor "
        f"norm (not converged at {unconverged} of {len(rows)} points within the budget)"
    )
    return reasons


def _fitted(s: SlopeFit) -> str:
    return f"{slope_text(s)} (95% interval, {s.n_points} points)"


def _contains(s: SlopeFit, value: float) -> bool | None:
    if s.ci_low is None or s.ci_high is None:
        return None
    return s.ci_low <= value <= s.ci_high
