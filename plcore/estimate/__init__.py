"""Estimates and bounds of the PL* constants (THEORY.md sections 3, 4 and 8).

* :mod:`plcore.estimate.spectral`  exact quantities at w0: r0, loss, spectrum of K(w0)
* :mod:`plcore.estimate.bounds`    perturbation bounds from beta (Weyl), r*, closing radius
* :mod:`plcore.estimate.analytic`  a proven layer-by-layer upper bound on sup_B ||H_F|| (MLPs)
* :mod:`plcore.estimate.probes`    one-sided estimates by evaluating points of the ball
* :mod:`plcore.estimate.psd`       eigenvalue bounds that hold in floating point (shifted Cholesky)
* :mod:`plcore.estimate.activation_constants`  sup|phi'|, sup|phi''| rounded up
* :mod:`plcore.estimate.rounding`  running-error bounds of the evaluated F and J (E_F, E_J)
"""

from __future__ import annotations

from plcore.estimate.analytic import AnalyticBound, beta_upper_bound
from plcore.estimate.bounds import (
    ResidualThreshold,
    certificate_radius,
    closing_radius,
    lipschitz_upper_bound,
    mu_lower_bound,
    paper_mu_lower_bound,
    residual_threshold,
)
from plcore.estimate.probes import BallProbe, ProbeRecord, probe_ball
from plcore.estimate.psd import (
    EigenBound,
    certified_lambda_max_upper,
    certified_lambda_min_lower,
)
from plcore.estimate.rounding import EvaluationError, evaluation_error_bound
from plcore.estimate.spectral import InitialQuantities, initial_quantities

__all__ = [
    "AnalyticBound",
    "BallProbe",
    "EigenBound",
    "EvaluationError",
    "InitialQuantities",
    "ProbeRecord",
    "ResidualThreshold",
    "beta_upper_bound",
    "certificate_radius",
    "certified_lambda_max_upper",
    "certified_lambda_min_lower",
    "closing_radius",
    "evaluation_error_bound",
    "initial_quantities",
    "lipschitz_upper_bound",
    "mu_lower_bound",
    "paper_mu_lower_bound",
    "probe_ball",
    "residual_threshold",
]
