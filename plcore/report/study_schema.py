"""The result of a width (or depth) study (CONTRACT.md: ``plcert study width``; schema_version
"1"). Conventions are the report's (:mod:`plcore.report.schema`): K = J J^T, mu 1/2-normalized,
loss 1/2 sum of squares; infinite or undefined values are ``null``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from plcore.report.schema import Tier, Verdict

StudyKind = Literal["width", "depth"]
StudyMode = Literal["certify", "quantities"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")


class SlopeFit(_Section):
    """Exponent b of y ~ x^b (least squares in log-log) and its confidence interval."""

    estimate: float | None = Field(description="fitted slope b; null with < 2 distinct x")
    ci_low: float | None = Field(description="lower end of the interval; null with < 3 points")
    ci_high: float | None = Field(description="upper end of the interval; null with < 3 points")
    stderr: float | None = Field(None, description="standard error of b")
    intercept: float | None = Field(None, description="a of log y = a + b log x")
    n_points: int = Field(description="points in the fit (every value and seed)")
    n_excluded: int = Field(0, description="points left out (y missing, zero or not finite)")
    confidence: float = Field(0.95, description="coverage of [ci_low, ci_high]")
    method: str = ""


class StudyRow(_Section):
    """One study point: the base architecture at one width (or depth) and one seed."""

    width: int = Field(description="hidden width W (largest scaled layer size)")
    depth: int | None = Field(description="hidden layers (MLP shorthand; null for a layer list)")
    seed: int = Field(description="initialisation seed of the spec at this point")
    n_params: int = Field(description="m, trainable parameters")
    hessian_norm: float | None = Field(
        description="||H_F(w0)|| = sup_{|a|=|u|=1} a.H_F[u,u] (alternating power method, a "
        "lower estimate; the report's initial.hessian_norm)"
    )
    hessian_norm_converged: bool | None = None
    max_output_hessian_norm: float | None = Field(None, description="max_i ||Hess F_i(w0)||_2")
    lambda_min: float = Field(description="lambda0 = lambda_min(K(w0)) (eigh)")
    lambda_max: float = Field(description="lambda_max(K(w0))")
    lambda_min_infinite_width: float | None = Field(
        None, description="lambda_min of the infinite-width NTK (closed form; null without one)"
    )
    kernel_drift: float | None = Field(
        description="||K(w_T) - K(w0)||_F / ||K(w0)||_F after the drift run (T steps of GD)"
    )
    drift_steps: int = Field(description="T, GD steps of the run w_T comes from")
    drift_step_size: float | None = Field(description="step of that run (sum loss)")
    initial_loss: float
    final_loss: float | None = Field(description="L(w_T)")
    mu: float | None = Field(None, description="mu estimate (report constants.mu.estimate)")
    mu_lower_bound: float | None = None
    radius: float | None = Field(None, description="R = 2 L_F ||r0|| / mu (report)")
    verdict: Verdict | None = Field(None, description="null in 'quantities' mode")
    tier: Tier | None = None
    certified_from_step: int | None = Field(None, description="path certificate step t*")
    elapsed_s: float = 0.0
    notes: list[str] = Field(default_factory=list)


class StudyProvenance(_Section):
    data_sha256: str
    versions: dict[str, str]
    elapsed_s: float = Field(description="wall seconds over all points")
    created_at: str = ""


class StudyResult(_Section):
    """What ``plcore.study_width`` / ``study_depth`` return (and ``plcert study`` writes)."""

    schema_version: Literal["1"] = "1"
    kind: StudyKind = Field(description="what varies: hidden width or number of hidden layers")
    mode: StudyMode = Field(
        description="'certify': a full certification per point; 'quantities': only the "
        "Hessian norm, the kernel at w0 and the drift run (no mu, R, verdict)"
    )
    base_spec: dict[str, Any]
    model_description: str = ""
    widths: list[int] = Field(description="widths studied (for a depth study: the one width)")
    depths: list[int | None] = Field(description="depths studied (width study: the one depth)")
    seeds: list[int]
    scaled_layers: str = Field(description="which layers scale with W")
    options: dict[str, Any] = Field(default_factory=dict, description="certification options")
    hessian_norm_slope: SlopeFit = Field(
        description="log-log slope of ||H_F(w0)|| against the width (depth for a depth study)"
    )
    expected_slope: float | None = Field(
        None, description="theory: -0.5 (NTK, linear output), 0 (output nonlinearity), or null"
    )
    kernel_drift_slope: SlopeFit | None = Field(
        None, description="log-log slope of the relative kernel drift against the width"
    )
    kernel_drift_decreasing: bool | None = Field(
        None, description="the mean drift over seeds decreases from each width to the next"
    )
    lambda_min_infinite_width: float | None = Field(
        None, description="infinite-width lambda0 (width study, closed form where one exists)"
    )
    infinite_width_method: str = ""
    smallest_certified_width: int | None = Field(
        None, description="smallest width at which every seed was certified (certify mode)"
    )
    reasons: list[str]
    rows: list[StudyRow]
    provenance: StudyProvenance
