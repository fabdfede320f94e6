"""The report of one certification (schema_version "1"; CONTRACT.md lists the fixed fields).

Conventions used throughout (THEORY.md): loss L = 1/2 sum ||f(x_i) - y_i||^2 (a sum, with the 1/2);
K = J J^T (N x N, N = n*k, sample-major); ``mu`` is the 1/2-normalized PL* constant
(1/2 ||grad L||^2 >= mu L), so the unnormalized constant is 2 mu. Infinite or undefined values
are ``null``. Every number says how it was obtained (``method``), and whether it is an estimate
(one-sided: a lower estimate of a supremum, an upper estimate of an infimum) or a proven bound.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["certified", "not_certified", "inconclusive"]
Tier = Literal["rigorous", "estimated"]

SCHEMA_VERSION: Literal["1"] = "1"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")


class Problem(_Section):
    n_samples: int = Field(description="n, training points")
    n_outputs: int = Field(description="k, outputs per point")
    n_params: int = Field(description="m, trainable parameters")
    n_constraints: int = Field(description="N = n*k, equations F(w) = y")
    overparameterization_ratio: float = Field(description="m / N; PL* needs m >= N")
    model_description: str = ""
    model_format: str = ""
    dataset_name: str = ""
    activations: list[str] = Field(default_factory=list)
    smooth: bool = Field(True, description="every op twice differentiable (ReLU is not)")
    output_activation: str | None = None


class Initial(_Section):
    """Exact quantities at w0 (float64, up to solver tolerance where stated)."""

    loss: float = Field(description="L(w0) = 1/2 ||F(w0) - y||^2")
    residual_norm: float = Field(description="||r(w0)||")
    lambda_min: float = Field(description="smallest eigenvalue of K(w0) (eigh)")
    lambda_max: float = Field(description="largest eigenvalue of K(w0) (eigh)")
    condition_number: float | None = Field(description="lambda_max / lambda_min; null if singular")
    jacobian_norm: float = Field(description="||J(w0)||_2 = sqrt(lambda_max)")
    hessian_norm: float | None = Field(
        description="||H_F(w0)|| = sup_{|a|=|u|=1} a.H_F[u,u] (alternating power method; a lower "
        "estimate of the sup, exact at convergence)"
    )
    hessian_norm_converged: bool | None = None
    hessian_norm_spread: float | None = Field(
        None, description="relative spread of the value over restarts"
    )
    max_output_hessian_norm: float | None = Field(
        None, description="max_i ||Hess F_i(w0)||_2 (the paper's weaker quantity)"
    )
    max_output_hessian_exhaustive: bool | None = Field(
        None,
        description="true when every output was scanned; else the value is a lower estimate",
    )
    kernel_method: str = Field("", description="tangent-kernel implementation used")
    spectrum: list[float] = Field(
        default_factory=list, description="eigenvalues of K(w0), ascending (at most 2048 kept)"
    )
    lambda_min_lower: float | None = Field(
        None,
        description="lambda_min(K(w0)) >= this in floating point (the rigorous tier's lambda0)",
    )
    jacobian_norm_upper: float | None = Field(
        None, description="||J(w0)||_2 <= this in floating point"
    )
    residual_norm_upper: float | None = Field(
        None, description="||r(w0)|| <= this in floating point"
    )
    lower_bound_method: str = Field(
        "", description="how the floating-point bounds were obtained (docs/theory.md 15)"
    )


class UpperBracket(_Section):
    """A supremum over the ball: ``estimate`` is the largest value seen (a lower estimate of the
    sup), ``upper_bound`` a proven upper bound or null."""

    estimate: float | None
    upper_bound: float | None
    method: str


class LowerBracket(_Section):
    """An infimum over the ball: ``estimate`` is the smallest value seen (an upper estimate of the
    inf), ``lower_bound`` a proven lower bound or null."""

    estimate: float | None
    lower_bound: float | None
    method: str


class Constants(_Section):
    L_F: UpperBracket = Field(description="sup over the ball of ||J(w)||_2")
    beta_F: UpperBracket = Field(description="Lipschitz constant of J (<= sup ||H_F||)")
    mu: LowerBracket = Field(description="inf over the ball of lambda_min(K(w)), 1/2-normalized")
    mu_unnormalized: float | None = Field(None, description="2 mu: ||grad L||^2 >= mu' L")
    radius: float | None = Field(description="R = 2 L_F ||r0|| / mu at the chosen ball")
    search_radius: float | None = Field(description="rho, the ball the constants were measured on")
    radius_closes: bool = Field(False, description="R(rho) <= rho")
    radius_tier: Tier | None = Field(None, description="which constants closed the radius")


class InitClosure(_Section):
    """Why the theorem does or does not apply at w0, and by how much."""

    closes: bool
    failing_inequality: str | None = None
    required_radius: float | None = Field(None, description="2 L_F ||r0|| / mu")
    allowed_radius: float | None = Field(
        None, description="largest rho where the Hessian keeps mu(rho) > 0 (sqrt(lambda0)/beta)"
    )
    residual_norm: float | None = None
    residual_threshold: float | None = Field(None, description="r*: the certificate closes below")
    factor: float | None = Field(
        None, description="||r0|| / r*: how far w0 is from closing (<= 1 closes)"
    )
    beta: float | None = Field(None, description="beta_F behind r*")
    beta_kind: str | None = Field(None, description="'proven' or 'estimated'")
    estimated_residual_threshold: float | None = Field(
        None, description="r* with the estimated beta_F (when r* above used a proven bound)"
    )
    estimated_factor: float | None = Field(None, description="||r0|| / estimated r*")


class WidthExtrapolation(_Section):
    widths: list[int]
    factors: list[float]
    slope: float | None = Field(description="log-log slope of factor against width")
    width_to_close: float | None = Field(description="width where the factor reaches 1 (fit)")
    method: str
    tier: Tier = Field(
        "estimated",
        description="always estimated: beta at w0 from the power method, extrapolated in width",
    )
    note: str = Field("", description="what the extrapolation can and cannot say")


class PlannedLearningRate(_Section):
    learning_rate: float
    convention: Literal["mse", "sum"]
    step_size_sum: float = Field(description="the same step on the sum loss L")
    safe: bool
    ratio_to_safe: float = Field(description="planned / certified-safe step (<= 1 is safe)")
    message: str


class GD(_Section):
    step_size: float | None = Field(description="eta = 1 / (L_F^2 + beta_F ||r0||), sum loss")
    step_size_mse_mean: float | None = Field(description="the same step for MSE = (2/n) L: n eta/2")
    kappa: float | None = Field(description="1 / (eta mu)")
    rate: float | None = Field(description="1 - eta mu: L_t <= rate^t L_0")
    target_loss: float | None
    iterations_to_target: int | None = Field(description="ceil(ln(L0/eps) / -ln(1 - eta mu))")
    planned_learning_rate: PlannedLearningRate | None = None


class SGDPrediction(_Section):
    batch_size: int
    step_size: float | None = Field(description="eta* = mu / (beta (n beta + mu (s - 1)))")
    rate: float | None = Field(description="E[L_t+1] <= (1 - mu s eta / n) E[L_t]")
    radius: float | None = Field(description="R_SGD = 2 n sqrt(2 beta L0) / (mu delta)")
    confidence: float = Field(description="1 - delta")
    step_size_mse_mean: float | None = None
    iterations_to_target: int | None = None
    smoothness: float | None = Field(None, description="beta: per-sample smoothness used")
    method: str = Field("", description="how beta and mu were obtained")
    derived: bool = Field(True, description="derived in docs/theory.md, not printed in the paper")
    hypotheses_verified: bool = Field(
        False,
        description="PL* and smoothness verified on B(w0, R_SGD); false: a prediction only",
    )
    radius_ratio: float | None = Field(
        None, description="R_SGD / rho, rho the GD ball where mu and beta_F were obtained"
    )


class Validation(_Section):
    steps: int
    step_size: float | None
    losses: list[float]
    bound_held: bool | None = Field(description="L_t <= (1 - eta mu)^t L_0 at every step")
    max_distance_from_init: float
    min_pl_ratio: float | None = Field(description="min_t ||grad L||^2 / (2 L)")
    radius: float | None = None
    first_violation_step: int | None = None
    distances: list[float] = Field(default_factory=list)
    sgd_losses: list[float] | None = None
    sgd_batch_size: int | None = None
    recorded_steps: list[int] = Field(
        default_factory=list, description="step index of each stored point (series downsampled)"
    )
    pl_ratios: list[float | None] = Field(
        default_factory=list, description="||grad L||^2 / (2 L) at the stored steps"
    )
    step_size_switched_at: int | None = Field(
        None, description="step t* from which the run used the path certificate's step"
    )
    step_size_after_switch: float | None = Field(None, description="the step used from t* on")


class StepChange(_Section):
    step: int = Field(description="from this step of the checking run on ...")
    step_size: float = Field(description="... the run used this step size")


class PathCertificate(_Section):
    residual_threshold: float | None = Field(description="r* from the constants at w0")
    certified_from_step: int | None = Field(
        description="first step t* of the checking run where the certificate closes, or null"
    )
    mu: float | None = Field(None, description="(sqrt(lambda_min(K(w_t*))) - beta rho*)^2")
    radius: float | None = Field(
        None,
        description="2 ||r(w_t*)|| / sqrt(mu): GD from w_t* stays within it (the path-length "
        "form of the theorem, docs/theory.md section 18)",
    )
    step_size: float | None = None
    rate: float | None = None
    residual_at_step: float | None = None
    tier: Tier | None = None
    steps_needed_estimate: int | None = Field(
        None, description="if not reached: steps the run would need at its observed rate"
    )
    bound_held_after: bool | None = Field(
        None, description="L_t <= rate^(t - t*) L_t* on the rest of the run"
    )
    note: str = ""
    lambda_min_at_step: float | None = Field(None, description="lambda_min(K(w_t*)) (eigh)")
    jacobian_norm_at_step: float | None = Field(None, description="||J(w_t*)||_2")
    beta: float | None = Field(None, description="beta_F used on B(w_t*, ball_radius)")
    ball_radius: float | None = Field(
        None, description="rho*: the ball around w_t* the constants hold on (radius <= rho*)"
    )
    residual_threshold_at_step: float | None = Field(
        None, description="r*(w_t*) = max over rho <= rho* of rho (sqrt(lambda) - beta rho) / 2"
    )
    checked_steps: int = Field(0, description="full (kernel + Hessian) checks made along the run")
    beta_method: str = Field("", description="how beta on B(w_t*, ball_radius) was obtained")
    inequality: str = Field(
        "", description="the inequality that closed at t*, with the numbers it closed with"
    )
    step_changes: list[StepChange] = Field(
        default_factory=list,
        description="where the checking run changed its step size (validation.step_size before)",
    )


class PLEps(_Section):
    eps: float | None = Field(description="smallest loss down to which the rate is certified")
    iterations: int | None = None
    method: str = ""
    tier: Tier | None = None
    radius: float | None = Field(None, description="rho of the ball PL* holds on")
    step_size: float | None = None
    rate: float | None = None
    mu: float | None = None
    closes: bool | None = Field(
        None, description="the path-length bound keeps GD in the ball for ever: eps = 0 certified"
    )
    radius_cap: float | None = Field(
        None, description="radius of the ball the proven beta holds on (the scan stays inside)"
    )


class ProbePoint(_Section):
    source: str
    distance: float
    lambda_min: float
    jacobian_norm: float
    hessian_norm: float | None = None


class Provenance(_Section):
    model_sha256: str
    data_sha256: str
    versions: dict[str, str]
    device: str
    seed: int
    elapsed_s: float
    budget: str = ""
    options: dict[str, object] = Field(default_factory=dict)
    created_at: str = ""


class ParameterEntry(_Section):
    """One parameter tensor of the model: differentiated (``trainable``) or frozen."""

    name: str = Field(description="ONNX initializer name, or the JSON spec module's parameter name")
    shape: list[int] = Field(description="shape of the ONNX initializer or of the spec parameter")
    count: int = Field(description="number of entries")
    trainable: bool = Field(description="differentiated (part of w) or frozen")


class Report(_Section):
    schema_version: Literal["1"] = SCHEMA_VERSION
    verdict: Verdict
    tier: Tier
    reasons: list[str]
    problem: Problem
    initial: Initial
    constants: Constants
    gd: GD
    sgd: list[SGDPrediction] = Field(default_factory=list)
    validation: Validation | None
    path: PathCertificate
    at_init: InitClosure | None = None
    width_extrapolation: WidthExtrapolation | None = None
    pl_eps: PLEps | None = None
    probes: list[ProbePoint] = Field(default_factory=list)
    conventions: dict[str, str]
    provenance: Provenance
    parameters: list[ParameterEntry] = Field(
        default_factory=list,
        description="what was differentiated (trainable) and what was frozen (options "
        "trainable / frozen)",
    )
    timings: dict[str, float] = Field(default_factory=dict, description="stage -> wall seconds")
