"""Gradient-descent predictions of the local PL* theorem (THEORY.md section 3; Liu, Zhu & Belkin
(2022), "the local PL* theorem for GD" and its count of iterations).

Sum loss L = 1/2 ||F(w) - y||^2. With L_F, beta_F, mu valid on the ball:

* safe step        eta = 1 / (L_F^2 + beta_F ||r0||)
* linear rate      L(w_t) <= (1 - eta mu)^t L(w0);  condition number kappa = 1 / (eta mu)
* iterations       T(eps) = ceil( ln(L0 / eps) / -ln(1 - eta mu) )   (0 when L0 <= eps)
* MSE convention   MSE = (1/n) sum_i ||f(x_i) - y_i||^2 = (2/n) L, so GD on MSE with step s is GD
                   on L with step 2 s / n: the safe MSE step is n eta / 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from plcore.report.schema import GD, PlannedLearningRate


def safe_step(L_F: float, beta_F: float, residual_norm: float) -> float:
    """eta = 1 / (L_F^2 + beta_F ||r||): the descent lemma's step for the loss Hessian bound
    ||H_L|| <= ||J||^2 + ||r|| ||H_F|| <= L_F^2 + beta_F ||r|| along a path where ||r|| does not
    grow (THEORY.md section 3). The float64 value is lowered by a relative 1e-14 so that it never
    exceeds the exact 1 / (L_F^2 + beta_F ||r||) of its inputs (four roundings of <= u each;
    docs/theory.md, section 15)."""
    denom = L_F * L_F + beta_F * residual_norm
    if not denom > 0:
        raise ValueError(f"L_F^2 + beta_F ||r|| must be > 0, got L_F={L_F}, beta_F={beta_F}")
    return (1.0 / denom) * (1.0 - STEP_SLACK)


#: relative lowering of the computed step (covers the rounding of 1 / (L_F^2 + beta_F ||r||))
STEP_SLACK = 1e-14


def mse_step_from_sum(eta: float, n: int) -> float:
    """The MSE-convention step n eta / 2 that moves w exactly like step eta on the sum loss."""
    return n * eta / 2.0


def sum_step_from_mse(step_mse: float, n: int) -> float:
    """The sum-loss step 2 s / n equal to MSE step s (grad MSE = (2/n) grad L)."""
    return 2.0 * step_mse / n


def contraction(eta: float, mu: float) -> float:
    """rate = 1 - eta mu, clipped to [0, 1] (eta mu <= 1 always holds in exact arithmetic,
    since mu <= lambda_max(K) <= L_F^2 <= 1 / eta)."""
    return min(max(1.0 - eta * mu, 0.0), 1.0)


def iterations_to(loss0: float, eps: float, eta: float, mu: float) -> int | None:
    """T(eps) = ceil( ln(L0/eps) / -ln(1 - eta mu) ); 0 if L0 <= eps; None if eta mu <= 0.

    -ln(1 - x) is evaluated as -log1p(-x) for accuracy at small x. A rate of exactly 0 reaches
    zero loss in one step.
    """
    if loss0 <= eps:
        return 0
    x = eta * mu
    if not x > 0:
        return None
    if x >= 1.0:
        return 1
    return math.ceil(math.log(loss0 / eps) / -math.log1p(-x))


@dataclass(frozen=True)
class GDConstants:
    """The constants the GD prediction uses and where they come from."""

    L_F: float
    beta_F: float
    mu: float
    residual_norm: float
    source: str


def predict_gd(
    c: GDConstants,
    *,
    loss0: float,
    n_samples: int,
    target_loss: float | None,
    learning_rate: float | None = None,
    lr_convention: Literal["mse", "sum"] = "mse",
) -> GD:
    """The report's GD section from the constants ``c`` (see module docstring)."""
    eta = safe_step(c.L_F, c.beta_F, c.residual_norm)
    eps = target_loss if target_loss is not None else 1e-6 * loss0
    em = eta * c.mu
    planned = None
    if learning_rate is not None:
        planned = check_learning_rate(learning_rate, lr_convention, eta, n_samples)
    return GD(
        step_size=eta,
        step_size_mse_mean=mse_step_from_sum(eta, n_samples),
        kappa=1.0 / em if em > 0 else None,
        rate=contraction(eta, c.mu),
        target_loss=eps,
        iterations_to_target=iterations_to(loss0, eps, eta, c.mu),
        planned_learning_rate=planned,
    )


def check_learning_rate(
    learning_rate: float, convention: Literal["mse", "sum"], eta: float, n_samples: int
) -> PlannedLearningRate:
    """Compare a planned learning rate with the safe step eta (sum convention).

    The planned rate is converted to the sum convention (x 2/n for MSE) and is safe iff it is
    <= eta; ``ratio_to_safe`` = planned / eta.
    """
    step_sum = sum_step_from_mse(learning_rate, n_samples) if convention == "mse" else learning_rate
    ratio = step_sum / eta
    safe = ratio <= 1.0
    where = "MSE (1/n) sum ||f - y||^2" if convention == "mse" else "sum loss 1/2 sum ||f - y||^2"
    if safe:
        msg = (
            f"learning rate {learning_rate:.4g} on the {where} is {ratio:.3g} x the certified "
            f"step: inside the range where the theorem guarantees the rate"
        )
    else:
        msg = (
            f"learning rate {learning_rate:.4g} on the {where} is {ratio:.3g} x the certified "
            f"step: the theorem gives no guarantee; use at most "
            f"{eta * (n_samples / 2 if convention == 'mse' else 1.0):.4g}"
        )
    return PlannedLearningRate(
        learning_rate=learning_rate,
        convention=convention,
        step_size_sum=step_sum,
        safe=safe,
        ratio_to_safe=ratio,
        message=msg,
    )
