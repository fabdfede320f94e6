"""Verdict rules and plain-language reasons (docs/theory.md, "Verdict rules").

Rules, in order:

1. N = n k > m (under-parameterized): ``not_certified``, tier rigorous. rank K <= m < N, so
   lambda_min(K(w)) = 0 for every w and PL* cannot hold anywhere (THEORY.md section 2).
2. lambda0 numerically zero (lambda_min(K(w0)) <= 1e-12 lambda_max): PL* fails at w0 itself.
   With duplicated inputs, two rows of J are equal at every w, so lambda_min(K(w)) = 0 everywhere:
   ``not_certified`` (rigorous). Otherwise (collinear data, dead or saturated units) the kernel
   may become non-singular along training: the path certificate decides, else ``inconclusive``.
3. The certificate closes at w0 (proven constants: rigorous; estimates: estimated) and the
   checking run agrees: ``certified``.
   An estimated closure at w0 followed by a rigorous path certificate (rule 4) is rigorous.
4. It closes at a step t* of the checking run and the rest of the run agrees: ``certified``
   (tier of the constants used at t*). After an estimated closure the run keeps looking for a
   rigorous one, which then replaces it.
5. Otherwise ``not_certified``, tier ``estimated``: the certificate could not be established
   with the measured constants. That is no proof that GD fails (the theorem's conditions are
   sufficient, not necessary), so only rules 1 and 2 give a rigorous ``not_certified``.
A certificate contradicted by its own checking run (a bug or a bad estimate) becomes
``inconclusive`` with a loud reason.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from plcore.certificate._json import finite_or_none
from plcore.certificate.radius import Closure
from plcore.estimate.analytic import bound_refusal, shared_structure
from plcore.estimate.bounds import residual_threshold
from plcore.estimate.rounding import evaluation_bound_refusal
from plcore.estimate.spectral import InitialQuantities
from plcore.models.base import Model
from plcore.report.schema import InitClosure, PathCertificate, Tier, Verdict

SINGULAR_RTOL = 1e-12
"""lambda0 <= SINGULAR_RTOL * lambda_max counts as singular (eigh rounds at ~1e-16 lambda_max)."""

_RANGES = {"tanh": (-1.0, 1.0), "erf": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}


def g(x: float | None) -> str:
    """A number for a sentence: 4 significant digits, 'inf' / 'n/a' spelled out."""
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "infinity"
    return f"{x:.4g}"


def is_singular(lambda_min: float, lambda_max: float) -> bool:
    """lambda0 <= 1e-12 lambda_max, or lambda0 <= 0."""
    return lambda_min <= 0 or lambda_min <= SINGULAR_RTOL * lambda_max


def under_parameterized_reason(n: int, k: int, m: int) -> str:
    return (
        f"under-parameterized: N = n*k = {n}*{k} = {n * k} constraints > m = {m} parameters, "
        f"so rank K <= m < N and lambda_min(K) = 0 everywhere (THEORY 2): PL* cannot hold and "
        f"gradient descent is not guaranteed to reach zero loss"
    )


def has_duplicate_inputs(X: Tensor) -> bool:
    """Two identical rows of X (flattened per sample)."""
    flat = X.reshape(X.shape[0], -1)
    return int(torch.unique(flat, dim=0).shape[0]) < int(flat.shape[0])


def singular_kernel_reason(
    model: Model, X: Tensor, lambda_min: float, lambda_max: float
) -> tuple[str, bool]:
    """(reason, structural): the likely cause of lambda_min(K(w0)) ~ 0; ``structural`` when it
    holds at every w (duplicate inputs)."""
    head = (
        f"lambda_min(K(w0)) = {g(lambda_min)} is numerically zero (<= {SINGULAR_RTOL:g} x "
        f"lambda_max = {g(lambda_max)}): PL* fails at w0, the theorem cannot start there"
    )
    if has_duplicate_inputs(X):
        return (
            head + "; cause: duplicate inputs, whose rows of J coincide at every w, so "
            "lambda_min(K(w)) = 0 everywhere",
            True,
        )
    flat = X.reshape(X.shape[0], -1)
    rank = int(torch.linalg.matrix_rank(torch.cat([flat, torch.ones_like(flat[:, :1])], 1)))
    causes = []
    if rank < flat.shape[0] and (not model.activations or set(model.activations) == {"identity"}):
        causes.append(
            f"the inputs are affinely dependent (rank {rank} < n = {flat.shape[0]}) "
            "and the model is linear in them"
        )
    if "relu" in model.activations:
        causes.append("dead ReLU units (inactive on every input contribute no kernel rank)")
    if model.output_activation in _RANGES:
        causes.append(f"a saturated output activation ({model.output_activation})")
    if not causes:
        causes.append("collinear data, dead or saturated units, or a layer initialised at zero")
    return head + "; likely cause: " + "; or ".join(causes), False


def model_notes(model: Model, y: Tensor) -> list[str]:
    """Reasons that qualify any verdict: non-smooth ops, shared modules or parameters (no
    proven bound), saturating outputs."""
    notes = []
    if not model.smooth:
        ops = ", ".join(model.nonsmooth_ops) or "an op"
        notes.append(
            f"heuristic: the model uses {ops}, which is not twice differentiable; the "
            "theorem assumes a smooth F, so every constant here is an estimate"
        )
    shared = shared_structure(model.module)
    if shared is not None:
        notes.append(
            f"no proven beta_F (rigorous tier refused): {shared}; the layer-by-layer Hessian "
            "bound treats every module as its own block of parameters, so a model that applies "
            "one module or parameter in two places gets estimates only"
        )
    refusal = evaluation_bound_refusal(model)
    if shared is None and refusal is not None and model.smooth and model.affine_in_params:
        notes.append(
            "rigorous tier refused: F is affine in the trainable parameters (beta_F = 0), but "
            f"the rounding inside the evaluation of F and J has no running-error bound here "
            f"({refusal}); docs/theory.md section 15"
        )
    if shared is None and model.smooth and not model.affine_in_params:
        no_beta = bound_refusal(model)
        if no_beta is not None:
            notes.append(
                f"rigorous tier refused: no proven beta_F bound for this model ({no_beta}); "
                "docs/theory.md section 16 lists the layers it covers"
            )
        elif refusal is not None:
            notes.append(
                "rigorous tier refused: beta_F has a proven bound, but the rounding inside the "
                f"evaluation of F and J has no running-error bound here ({refusal}); "
                "docs/theory.md section 15"
            )
    out = model.output_activation
    if out in _RANGES:
        lo, hi = _RANGES[out]
        note = (
            f"the output activation {out} saturates: ||H_F|| stays Theta(1) as width grows "
            "(THEORY 5), so width alone does not make the certificate close"
        )
        outside = int(((y <= lo) | (y >= hi)).sum())
        if outside:
            note += (
                f"; {outside} target value(s) lie outside its open range ({lo:g}, {hi:g}) "
                "and can never be fit exactly"
            )
        notes.append(note)
    return notes


def init_closure(
    *,
    closes: bool,
    residual_norm: float,
    lambda0: float,
    jac_norm: float,
    beta: float,
    beta_kind: str,
    r_star: float,
    beta_estimated: float | None = None,
) -> InitClosure:
    """InitClosure from the bound form at w0 (THEORY.md section 4): required radius
    2 ||J0|| ||r0|| / lambda0 (the smallest any ball can need), allowed radius sqrt(lambda0)/beta
    (mu(rho) > 0 only below it), factor ||r0|| / r*. With a proven beta, the same with the
    estimated beta is given beside it (``estimated_*``)."""
    required = 2.0 * jac_norm * residual_norm / lambda0 if lambda0 > 0 else math.inf
    allowed = math.sqrt(lambda0) / beta if beta > 0 else math.inf
    factor = (
        residual_norm / r_star
        if r_star > 0 and math.isfinite(r_star)
        else (0.0 if math.isinf(r_star) else math.inf)
    )
    failing = None
    if not closes:
        failing = (
            f"R(rho) = 2 L_F(rho) ||r0|| / mu(rho) <= rho fails on every ball: with "
            f"{beta_kind} beta_F = {g(beta)}, ||r0|| = {g(residual_norm)} > r* = "
            f"{g(r_star)}"
        )
    est_r: float | None = None
    est_f: float | None = None
    if beta_kind == "proven" and beta_estimated is not None and lambda0 > 0:
        est_r = residual_threshold(lambda0, jac_norm, beta_estimated).r_star
        est_f = residual_norm / est_r if 0 < est_r < math.inf else None
        est_r = finite_or_none(est_r)
    return InitClosure(
        closes=closes,
        failing_inequality=failing,
        required_radius=finite_or_none(required),
        allowed_radius=finite_or_none(allowed),
        residual_norm=residual_norm,
        residual_threshold=finite_or_none(r_star),
        factor=finite_or_none(factor),
        beta=beta,
        beta_kind=beta_kind,
        estimated_residual_threshold=est_r,
        estimated_factor=est_f,
    )


def init_failure_reason(c: InitClosure, beta: float, beta_kind: str) -> str:
    """'The PL* theorem does not apply at w0: it needs R >= ... but the Hessian allows ...'."""
    return (
        f"the PL* theorem does not apply at w0: it needs a ball of radius R >= 2 ||J0|| ||r0|| / "
        f"lambda0 = {g(c.required_radius)}, but the Hessian ({beta_kind} beta_F = {g(beta)}) keeps "
        f"mu > 0 only on balls of radius < sqrt(lambda0) / beta_F = {g(c.allowed_radius)}; "
        f"equivalently ||r0|| = {g(c.residual_norm)} exceeds the residual threshold r* = "
        f"{g(c.residual_threshold)} by a factor {g(c.factor)}"
        + (
            f" (with the estimated beta_F instead: r* = {g(c.estimated_residual_threshold)}, "
            f"factor {g(c.estimated_factor)})"
            if c.estimated_factor is not None
            else ""
        )
    )


def contradiction_reason(where: str, step: int | None) -> str:
    return (
        f"CONTRADICTION: the checking run broke the certified bound {where} at step {step}; "
        "the constants behind the certificate are wrong (an estimate missed the true sup/inf, "
        "or a bug): the verdict is downgraded to inconclusive"
    )


def decide(
    model: Model,
    X: Tensor,
    iq: InitialQuantities,
    closure: Closure | None,
    at_init: InitClosure,
    bound_held: bool | None,
    first_violation: int | None,
    path: PathCertificate,
    reasons: list[str],
    beta_kind: str,
    beta_star: float,
) -> tuple[Verdict, Tier]:
    """The verdict rules 2-5 of the module docstring (rule 1 is applied before any search);
    prepends the main reasons to ``reasons`` and returns (verdict, tier)."""
    smooth_tier: Tier = "rigorous" if model.smooth else "estimated"
    path_tier: Tier = path.tier if path.tier is not None and model.smooth else "estimated"
    if iq.residual_norm == 0:
        reasons.insert(0, "||r0|| = 0: w0 already interpolates the data")
        return "certified", smooth_tier
    path_reason = (
        f"applying the theorem at step {path.certified_from_step} of the checking run "
        f"(||r|| = {g(path.residual_at_step)} <= r* = {g(path.residual_threshold_at_step)}, "
        f"lambda_min(K) = {g(path.lambda_min_at_step)}, {path.tier} beta_F = {g(path.beta)}) "
        f"certifies convergence to zero loss from there: step {g(path.step_size)}, rate "
        f"{g(path.rate)} per step, within radius {g(path.radius)} of that iterate"
    )
    if is_singular(iq.lambda_min, iq.lambda_max):
        why, structural = singular_kernel_reason(model, X, iq.lambda_min, iq.lambda_max)
        reasons.insert(0, why)
        if structural:
            return "not_certified", "rigorous"
        if path.certified_from_step is not None and path.bound_held_after is not False:
            reasons.insert(1, path_reason)
            return "certified", path_tier
        reasons.insert(1, "the checking run did not reach a point where the certificate closes")
        return "inconclusive", "estimated"
    if closure is not None and closure.closes:
        tier: Tier = closure.tier if closure.tier is not None and model.smooth else "estimated"
        radius_text = (
            f"the path-length bound eta L_F ||r0|| / (1 - sqrt(1 - eta mu)) = {g(closure.R)} "
            f"<= rho (PL*_eps with eps = 0)"
            if closure.form == "PL*_eps path length"
            else f"R = 2 L_F ||r0|| / mu = {g(closure.R)} <= rho"
        )
        reasons.insert(
            0,
            (
                f"certified at w0 ({tier}, {closure.form}): on B(w0, rho = {g(closure.rho)}) "
                f"L_F = {g(closure.L)}, beta_F = {g(closure.beta)}, mu = {g(closure.mu)} give "
                f"{radius_text}, so GD with the certified step "
                f"converges to zero loss at a linear rate and stays within R of w0"
            ),
        )
        if bound_held is False:
            reasons.insert(0, contradiction_reason("L_t <= (1 - eta mu)^t L_0", first_violation))
            return "inconclusive", tier
        upgrade = (
            tier == "estimated"
            and path_tier == "rigorous"
            and path.certified_from_step is not None
            and path.bound_held_after is True
        )
        if upgrade:
            reasons.insert(1, path_reason + " (rigorous, after the estimated closure at w0)")
            return "certified", "rigorous"
        return "certified", tier
    reasons.insert(0, init_failure_reason(at_init, beta_star, beta_kind))
    if path.certified_from_step is not None:
        if path.bound_held_after is False:
            reasons.insert(0, contradiction_reason("after t*", path.certified_from_step))
            return "inconclusive", path_tier
        reasons.insert(1, path_reason)
        return "certified", path_tier
    need = path.steps_needed_estimate
    reasons.insert(
        1,
        (
            "the checking run never reached a point where the certificate closes"
            + (f"; at its observed rate it would need about {need} steps" if need else "")
        ),
    )
    reasons.append(
        "not_certified means the PL* certificate could not be established from w0 or along the "
        "checking run; the theorem's conditions are sufficient, not necessary, so this is no "
        "proof that gradient descent fails"
    )
    return "not_certified", "estimated"
