"""Mini-batch SGD predictions (THEORY.md section 6). DERIVED here and in docs/theory.md
(section "SGD"), in the spirit of Liu, Zhu & Belkin (2022), "SGD under PL*", and Bassily,
Belkin & Ma (2018); the printed constants could not be checked, so the report labels them derived.

Setting: L = sum_i l_i, l_i = 1/2 ||f(w; x_i) - y_i||^2, each l_i beta-smooth on the ball, L mu-PL*
(1/2-normalized). A batch is s indices drawn uniformly with replacement; the update is
w <- w - eta sum_{j in batch} grad l_j. Then, for

    eta* = mu / (beta (n beta + mu (s - 1))),

E[L_{t+1}] <= (1 - mu s eta* / n) E[L_t], and the iterates stay in B(w0, R_SGD) with probability
>= 1 - delta, where R_SGD = 2 n sqrt(2 beta L0) / (mu delta) (Markov's inequality on the expected
path length).

Per-sample smoothness: Hess l_i = J_i^T J_i + sum_c r_ic Hess f_ic, so
||Hess l_i|| <= ||J_i||^2 + ||r_i|| beta_F (the tensor norm of sample i's block is at most that of
the whole H_F). This module uses beta = max_i (||J_i(w0)||^2 + ||r_i(w0)|| beta_F): exact for a
linear model (beta_F = 0), an estimate at w0 otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from plcore.certificate.predict_gd import iterations_to
from plcore.report.schema import SGDPrediction


def per_sample_smoothness(K0: Tensor, r0: Tensor, n_outputs: int, beta_F: float) -> float:
    """beta = max_i ( lambda_max(K0_ii) + ||r_i(w0)|| beta_F ).

    K0_ii is sample i's k x k diagonal block of K(w0) = J0 J0^T, so lambda_max(K0_ii) =
    ||J_i(w0)||_2^2; r_i is sample i's residual (length k).
    """
    N = K0.shape[0]
    k = n_outputs
    n = N // k
    blocks = K0.reshape(n, k, n, k).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # (n, k, k)
    jn2 = torch.linalg.eigvalsh(blocks)[:, -1]
    rn = r0.reshape(n, k).norm(dim=1)
    return float((jn2 + rn * beta_F).max())


def sgd_step(mu: float, beta: float, n: int, s: int) -> float:
    """eta* = mu / (beta (n beta + mu (s - 1))) (THEORY.md section 6, derived)."""
    return mu / (beta * (n * beta + mu * (s - 1)))


def sgd_rate(mu: float, eta: float, n: int, s: int) -> float:
    """E[L_{t+1}] <= (1 - mu s eta / n) E[L_t]."""
    return 1.0 - mu * s * eta / n


def sgd_radius(beta: float, loss0: float, mu: float, n: int, delta: float) -> float:
    """R_SGD = 2 n sqrt(2 beta L0) / (mu delta)."""
    return 2.0 * n * math.sqrt(2.0 * beta * loss0) / (mu * delta)


def predict_sgd(
    batch_sizes: list[int],
    *,
    mu: float,
    beta: float,
    n: int,
    loss0: float,
    target_loss: float,
    confidence: float,
) -> list[SGDPrediction]:
    """One :class:`SGDPrediction` per batch size (nulls where mu <= 0 or beta <= 0).

    ``step_size_mse_mean`` is s eta / 2: the step for the batch-mean MSE
    (1/s) sum_{j in batch} ||f - y||^2 = (2/s) sum_j l_j, which moves w like eta on sum_j l_j.
    """
    out: list[SGDPrediction] = []
    delta = 1.0 - confidence
    for s in batch_sizes:
        if not (mu > 0 and beta > 0):
            out.append(
                SGDPrediction(
                    batch_size=s,
                    step_size=None,
                    rate=None,
                    radius=None,
                    confidence=confidence,
                    smoothness=beta if beta > 0 else None,
                )
            )
            continue
        eta = sgd_step(mu, beta, n, s)
        rate = sgd_rate(mu, eta, n, s)
        out.append(
            SGDPrediction(
                batch_size=s,
                step_size=eta,
                rate=rate,
                radius=sgd_radius(beta, loss0, mu, n, delta),
                confidence=confidence,
                step_size_mse_mean=s * eta / 2.0,
                iterations_to_target=iterations_to(loss0, target_loss, 1.0, mu * s * eta / n),
                smoothness=beta,
                derived=True,
            )
        )
    return out
