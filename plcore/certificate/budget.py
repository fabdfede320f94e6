"""Effort presets of a certification run (``CertifyOptions.budget``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Budget:
    """How hard each stage tries.

    Attributes:
        name: "fast", "standard" or "thorough".
        n_sphere: random directions per ball (each probed at radius rho/4, rho/2 and rho).
        n_adversarial: adversarial ascents per ball and target (large ||H_F||, small lambda_min).
        adversarial_steps: projected ascent steps of each adversarial search.
        power_restarts: restarts of the Hessian tensor-norm power method.
        radius_grid: number of radii rho tried by the radius search (geometric grid).
        radius_growth: ratio of consecutive radii of the grid.
        validation_steps: default number of steps of the checking GD run.
        path_checks: at most this many full (kernel + Hessian) checks along the run.
        width_fractions: hidden-width fractions of the width sweep (MLP specs only).
        width_max_params: skip the width sweep when the model has more parameters than this.
        pilot_steps: GD steps of the short pilot run whose iterates are probed as "GD path".
        output_hessian_scan: outputs scanned for max_i ||Hess F_i(w0)|| (Lanczos each).
        output_hessian_restarts: Lanczos restarts of the best scanned output (each scanned output
            gets one cycle of krylov_dim products first; a lower bound whatever the count).
        hessian_tol: relative tolerance of the Hessian norm solvers.
        hessian_max_iter: outer iterations of the alternating power method.
        krylov_dim: Lanczos subspace size for max_i ||Hess F_i||.
        probe_hessian_max_iter: outer iterations of the power method at each probe point
            (warm-started from the nearest solved point; a lower estimate whatever the count).
        power_krylov_dim: Hessian-vector products of each inner Lanczos cycle of the power
            method (w0, probes, path checks).
        power_race_iter: outer iterations every start of the power method at w0 gets before
            only the best one goes on.
    """

    name: str
    n_sphere: int
    n_adversarial: int
    adversarial_steps: int
    power_restarts: int
    radius_grid: int
    radius_growth: float
    validation_steps: int
    path_checks: int
    width_fractions: tuple[float, ...]
    width_max_params: int
    pilot_steps: int
    output_hessian_scan: int
    output_hessian_restarts: int
    hessian_tol: float
    hessian_max_iter: int
    krylov_dim: int
    probe_hessian_max_iter: int
    power_krylov_dim: int
    power_race_iter: int


BUDGETS: Final[dict[str, Budget]] = {
    "fast": Budget(
        name="fast",
        n_sphere=1,
        n_adversarial=1,
        adversarial_steps=1,
        power_restarts=2,  # J^T 1 and the top output Hessian's vector (audit test, erf case:
        # a single start stops at a local maximum)
        radius_grid=6,
        radius_growth=2.0,
        validation_steps=200,
        path_checks=12,
        width_fractions=(0.25, 1.0),
        width_max_params=200_000,
        pilot_steps=2,
        output_hessian_scan=8,
        output_hessian_restarts=4,
        hessian_tol=1e-6,
        hessian_max_iter=6,
        krylov_dim=10,
        probe_hessian_max_iter=1,
        power_krylov_dim=8,
        power_race_iter=1,
    ),
    "standard": Budget(
        name="standard",
        n_sphere=6,
        n_adversarial=2,
        adversarial_steps=6,
        power_restarts=3,
        radius_grid=10,
        radius_growth=1.6,
        validation_steps=1000,
        path_checks=20,
        width_fractions=(1 / 16, 0.25, 1.0),
        width_max_params=5_000_000,
        pilot_steps=8,
        output_hessian_scan=16,
        output_hessian_restarts=10,
        hessian_tol=1e-8,
        hessian_max_iter=12,
        krylov_dim=20,
        probe_hessian_max_iter=2,
        power_krylov_dim=10,
        power_race_iter=2,
    ),
    "thorough": Budget(
        name="thorough",
        n_sphere=16,
        n_adversarial=4,
        adversarial_steps=10,
        power_restarts=6,
        radius_grid=16,
        radius_growth=1.35,
        validation_steps=5000,
        path_checks=120,
        width_fractions=(1 / 64, 1 / 16, 0.25, 1.0),
        width_max_params=50_000_000,
        pilot_steps=16,
        output_hessian_scan=128,
        output_hessian_restarts=20,
        hessian_tol=1e-10,
        hessian_max_iter=300,
        krylov_dim=40,
        probe_hessian_max_iter=50,
        power_krylov_dim=10,
        power_race_iter=2,
    ),
}


def get_budget(name: str) -> Budget:
    """The preset called ``name``; raises ``KeyError`` listing the known names."""
    try:
        return BUDGETS[name]
    except KeyError:
        raise KeyError(f"unknown budget {name!r}; known: {sorted(BUDGETS)}") from None
