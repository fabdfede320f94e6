"""Perturbation bounds on a ball B(w0, rho) from quantities at w0 and beta (THEORY.md section 4).

Notation: J0 = J(w0), lambda0 = lambda_min(K(w0)) = sigma_min(J0)^2 (N <= m), ||J0||_2 =
sqrt(lambda_max(K(w0))), r0 = F(w0) - y, and beta >= the Lipschitz constant beta_F of
w -> J(w) in spectral norm on the ball (for example beta >= sup_B ||H_F||, since
J(w) - J(w0) = int_0^1 H_F(w0 + t(w - w0))[w - w0, .] dt).

Derivations (each has a test against brute force in tests/plcore/estimate/test_bounds.py):

* Weyl's inequality for singular values: |sigma_j(A) - sigma_j(B)| <= ||A - B||_2. With
  ||J(w) - J0||_2 <= beta ||w - w0|| <= beta rho this gives
  sigma_min(J(w)) >= sqrt(lambda0) - beta rho, hence, when the right side is >= 0,
  lambda_min(K(w)) = sigma_min(J(w))^2 >= (sqrt(lambda0) - beta rho)^2   (mu_lower_bound)
  and ||J(w)||_2 <= ||J0||_2 + beta rho                             (lipschitz_upper_bound).
* The certificate (THEORY.md section 3) needs R(rho) = 2 L_F(rho) ||r0|| / mu(rho) <= rho.
  With the two bounds above it suffices that
  g(rho) = rho (sqrt(lambda0) - beta rho)^2 / (2 (||J0|| + beta rho)) >= ||r0||,
  so the certificate closes for every residual ||r0|| <= r* = max_rho g(rho)  (residual_threshold).
* The sharper path-length theorem (docs/theory.md section 18) needs only
  2 ||r|| / sqrt(mu(rho)) <= rho, i.e. ||r|| <= g'(rho) = rho (sqrt(lambda0) - beta rho) / 2,
  whose max over rho is lambda0 / (8 beta)  (path_residual_threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from plcore.errors import OptionsError


def _check(**values: float) -> None:
    bad = {k: v for k, v in values.items() if not (v >= 0) or math.isnan(v)}
    if bad:
        raise OptionsError(f"bound arguments must be >= 0 and not NaN, got {bad}")


def mu_lower_bound(lambda0: float, beta: float, rho: float) -> float:
    """mu(rho) >= (sqrt(lambda0) - beta rho)^2 when sqrt(lambda0) > beta rho, else 0.

    From Weyl's inequality sigma_min(J(w)) >= sigma_min(J0) - ||J(w) - J0||_2
    >= sqrt(lambda0) - beta rho for every w in B(w0, rho) (module docstring).
    """
    _check(lambda0=lambda0, beta=beta, rho=rho)
    s = math.sqrt(lambda0) - beta * rho
    return s * s if s > 0 else 0.0


def lipschitz_upper_bound(jac_norm: float, beta: float, rho: float) -> float:
    """L_F(rho) = sup_B ||J(w)||_2 <= ||J0||_2 + beta rho (triangle inequality)."""
    _check(jac_norm=jac_norm, beta=beta, rho=rho)
    return jac_norm + beta * rho


def paper_mu_lower_bound(
    lambda0: float, L_F: float, N: int, max_output_hessian: float, rho: float
) -> float:
    """The paper's form: lambda_min(K(w)) >= lambda0 - 2 L_F sqrt(N) max_i sup_B ||Hess F_i|| rho.

    Liu, Zhu & Belkin (2022), "the wide-network conditioning bound" (its proof): ||K(w) - K(w0)|| <=
    2 L_F ||J(w) - J0|| and ||J(w) - J0||_2 <= sqrt(N) max_i sup ||Hess F_i|| rho (each row of
    J moves by at most max_i ||Hess F_i|| rho). May be negative (then it certifies nothing).
    """
    _check(lambda0=lambda0, L_F=L_F, N=N, max_output_hessian=max_output_hessian, rho=rho)
    return lambda0 - 2.0 * L_F * math.sqrt(N) * max_output_hessian * rho


def certificate_radius(L_F: float, residual_norm: float, mu: float) -> float:
    """R = 2 L_F ||r0|| / mu (THEORY.md section 3); inf when mu <= 0."""
    _check(L_F=L_F, residual_norm=residual_norm)
    if not mu > 0:
        return math.inf
    return 2.0 * L_F * residual_norm / mu


@dataclass(frozen=True)
class ResidualThreshold:
    """r_star = max_rho g(rho) (module docstring) and the rho_star attaining it.

    r_star = inf (and rho_star = inf) when beta = 0; r_star = 0 when lambda0 = 0.
    """

    r_star: float
    rho_star: float


def _h(t: float, c: float) -> float:
    return t * (1.0 - t) ** 2 / (c + t)


def residual_threshold(lambda0: float, jac_norm: float, beta: float) -> ResidualThreshold:
    """r* = max over rho in (0, sqrt(lambda0)/beta) of rho (sqrt(lambda0) - beta rho)^2 /
    (2 (||J0|| + beta rho)).

    Closed form. Substituting t = beta rho / sqrt(lambda0) in (0, 1) and c = ||J0|| / sqrt(lambda0)
    (>= 1, as ||J0|| >= sigma_min(J0)) gives g = lambda0 h(t) / (2 beta), h(t) = t (1-t)^2 / (c+t).
    h'(t) has the sign of (1 - t)(c - 3 c t - 2 t^2), whose only root in (0, 1) is
    t* = (-3c + sqrt(9c^2 + 8c)) / 4 = 2c / (3c + sqrt(9c^2 + 8c)) (the second form avoids
    cancellation for large c); h increases before t* and decreases after (unimodal).
    """
    _check(lambda0=lambda0, jac_norm=jac_norm, beta=beta)
    if lambda0 == 0.0:
        return ResidualThreshold(0.0, 0.0)
    if beta == 0.0:
        return ResidualThreshold(math.inf, math.inf)
    sq = math.sqrt(lambda0)
    c = jac_norm / sq
    if c == 0.0:  # J0 = 0 with lambda0 > 0 is impossible; keep the limit t -> 0 for safety
        return ResidualThreshold(lambda0 / (2.0 * beta), 0.0)
    t = 2.0 * c / (3.0 * c + math.sqrt(9.0 * c * c + 8.0 * c))
    return ResidualThreshold(lambda0 * _h(t, c) / (2.0 * beta), t * sq / beta)


def certificate_gap(rho: float, lambda0: float, jac_norm: float, beta: float) -> float:
    """g(rho) = rho (sqrt(lambda0) - beta rho)^2 / (2 (||J0|| + beta rho)) on the increasing part.

    The certificate closes at rho iff g(rho) >= ||r0|| and sqrt(lambda0) > beta rho.
    """
    s = math.sqrt(lambda0) - beta * rho
    if s <= 0:
        return 0.0
    return rho * s * s / (2.0 * (jac_norm + beta * rho))


def path_length_radius(residual_norm: float, mu: float) -> float:
    """R' = 2 ||r|| / sqrt(mu): the length of the GD path from a point with residual r under
    mu-PL* (docs/theory.md section 18); inf when mu <= 0. R' <= R = 2 L_F ||r|| / mu always,
    as L_F >= sqrt(mu)."""
    _check(residual_norm=residual_norm)
    if not mu > 0:
        return math.inf
    return 2.0 * residual_norm / math.sqrt(mu)


def path_gap(rho: float, lambda0: float, beta: float) -> float:
    """g'(rho) = rho (sqrt(lambda0) - beta rho) / 2: with mu(rho) = (sqrt(lambda0) - beta rho)^2
    the path-length radius 2 ||r|| / sqrt(mu(rho)) fits in B(w, rho) iff ||r|| <= g'(rho)
    (0 when sqrt(lambda0) <= beta rho)."""
    s = math.sqrt(lambda0) - beta * rho
    return rho * s / 2.0 if s > 0 else 0.0


def path_residual_threshold(
    lambda0: float, beta: float, rho_max: float = math.inf
) -> ResidualThreshold:
    """max over 0 < rho <= rho_max of g'(rho) (:func:`path_gap`). g' is a concave parabola with
    its top at rho* = sqrt(lambda0) / (2 beta), where g' = lambda0 / (8 beta); for rho_max < rho*
    the max is g'(rho_max). Independent of ||J||: the Lipschitz constant only enters the step."""
    _check(lambda0=lambda0, beta=beta, rho_max=rho_max)
    if lambda0 == 0.0:
        return ResidualThreshold(0.0, 0.0)
    if beta == 0.0:
        return ResidualThreshold(math.inf, math.inf)
    rho = math.sqrt(lambda0) / (2.0 * beta)
    if rho <= rho_max:
        return ResidualThreshold(lambda0 / (8.0 * beta), rho)
    return ResidualThreshold(path_gap(rho_max, lambda0, beta), rho_max)


def closing_radius(
    lambda0: float, jac_norm: float, beta: float, residual_norm: float
) -> float | None:
    """The smallest rho with rho (sqrt(lambda0) - beta rho)^2 >= 2 (||J0|| + beta rho) ||r0||.

    None when no rho works (||r0|| > r*, or lambda0 = 0 with r0 != 0). g(rho) is increasing on
    (0, rho*], so the smallest root lies there and is found by bisection to rounding level; the
    returned rho satisfies the inequality (it is the upper end of the final bracket). For beta = 0
    the closed form rho = 2 ||J0|| ||r0|| / lambda0.
    """
    _check(lambda0=lambda0, jac_norm=jac_norm, beta=beta, residual_norm=residual_norm)
    if residual_norm == 0.0:
        return 0.0
    if lambda0 == 0.0:
        return None
    if beta == 0.0:
        return 2.0 * jac_norm * residual_norm / lambda0
    thr = residual_threshold(lambda0, jac_norm, beta)
    if residual_norm > thr.r_star:
        return None
    lo, hi = 0.0, thr.rho_star
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if certificate_gap(mid, lambda0, jac_norm, beta) >= residual_norm:
            hi = mid
        else:
            lo = mid
    # rounding at ||r0|| = r*: refuse rather than return a rho that does not satisfy the inequality
    return hi if certificate_gap(hi, lambda0, jac_norm, beta) >= residual_norm else None
