"""Independent reference computations for the report audit (tests/plcore/test_report_audit.py).

Nothing here calls plcore's numerical code: the flat map w -> F(w) is rebuilt from the module
with ``torch.func.functional_call`` and this file's own flattening, Jacobians and Hessians are
dense (``torch.autograd.functional``), eigenvalues come from numpy, optima from scipy or dense
grids, and gradient descent is a plain loop. Formulas are those of THEORY.md (cited per
function), written out again here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import torch
from torch import Tensor, nn
from torch.func import functional_call


@dataclass(frozen=True)
class FlatMap:
    """F(w) in R^N (sample-major) of ``module`` on inputs X, with w flattened here.

    Attributes:
        module: the network (float64); its parameters give w0 and the shapes.
        X: inputs (n, ...), float64. y: targets flattened sample-major, length N.
        names, shapes: the trainable parameters, in ``named_parameters`` order.
    """

    module: nn.Module
    X: Tensor
    y: Tensor
    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, module: nn.Module, X: Tensor, y: Tensor) -> FlatMap:
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        return cls(
            module,
            X.to(torch.float64),
            y.reshape(-1).to(torch.float64),
            tuple(n for n, _ in named),
            tuple(p.shape for _, p in named),
        )

    @property
    def m(self) -> int:
        return sum(int(math.prod(s)) for s in self.shapes)

    @property
    def N(self) -> int:
        return int(self.y.numel())

    def w0(self) -> Tensor:
        params = dict(self.module.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.names]).to(torch.float64)

    def __call__(self, w: Tensor) -> Tensor:
        """F(w), shape (N,)."""
        params: dict[str, Tensor] = {}
        offset = 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = int(math.prod(shape))
            params[name] = w[offset : offset + size].reshape(shape)
            offset += size
        return functional_call(self.module, params, (self.X,)).reshape(-1)

    def residual(self, w: Tensor) -> Tensor:
        """r(w) = F(w) - y."""
        with torch.no_grad():
            return self(w) - self.y

    def jacobian(self, w: Tensor) -> np.ndarray:
        """J(w) = DF(w), dense N x m."""
        J = torch.autograd.functional.jacobian(self, w.detach().clone())
        return J.detach().numpy().reshape(self.N, self.m)

    def hessians(self, w: Tensor) -> np.ndarray:
        """Hess F_i(w) for every output i, dense (N, m, m)."""
        out = []
        for i in range(self.N):

            def f_i(v: Tensor, i: int = i) -> Tensor:
                return self(v)[i]

            out.append(torch.autograd.functional.hessian(f_i, w.detach().clone()).numpy())
        return np.stack(out)

    def loss_and_grad(self, w: Tensor) -> tuple[float, Tensor, Tensor]:
        """L = 1/2 ||r||^2 (THEORY.md section 1), grad L = J^T r, and r (plain autograd)."""
        v = w.detach().clone().requires_grad_(True)
        r = self(v) - self.y
        loss = 0.5 * (r * r).sum()
        (grad,) = torch.autograd.grad(loss, v)
        return float(loss.detach()), grad.detach(), r.detach()


def kernel_eigenvalues(J: np.ndarray) -> np.ndarray:
    """Eigenvalues of K = J J^T (THEORY.md section 1), ascending (numpy eigvalsh)."""
    return np.linalg.eigvalsh(J @ J.T)


def spectral_norm(J: np.ndarray) -> float:
    """||J||_2, the largest singular value (numpy SVD)."""
    return float(np.linalg.svd(J, compute_uv=False)[0])


def max_output_hessian_norm(H: np.ndarray) -> float:
    """max_i ||Hess F_i||_2 (largest |eigenvalue| of each symmetric Hessian)."""
    return max(float(np.abs(np.linalg.eigvalsh(h)).max()) for h in H)


def tensor_norm_brute_force(H: np.ndarray, *, seed: int = 0, starts: int = 40) -> float:
    """||H_F|| = sup_{|a|=1} ||sum_i a_i H_i||_2 (THEORY.md section 1).

    Since a and -a are both unit, the sup equals sup_{|a|=1} lambda_max(sum_i a_i H_i). N = 1: the
    spectral norm of H_1; N = 2: the max over 20 000 angles of the circle; N > 2: L-BFGS on
    a = x / |x| from ``starts`` random starts plus each axis e_i (gradient of lambda_max:
    (u^T H_i u)_i, u the top eigenvector, projected on the tangent space).
    """
    N = H.shape[0]

    def top(a: np.ndarray) -> tuple[float, np.ndarray]:
        ev, vec = np.linalg.eigh(np.tensordot(a, H, axes=1))
        return float(ev[-1]), vec[:, -1]

    if N == 1:
        return float(np.abs(np.linalg.eigvalsh(H[0])).max())
    if N == 2:
        theta = np.linspace(0.0, 2.0 * np.pi, 20_000, endpoint=False)
        return max(top(np.array([math.cos(t), math.sin(t)]))[0] for t in theta)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        nx = float(np.linalg.norm(x))
        a = x / nx
        lam, u = top(a)
        g = np.einsum("j,ijk,k->i", u, H, u)
        g_x = (g - a * float(a @ g)) / nx
        return -lam, -g_x

    rng = np.random.default_rng(seed)
    x0s = [rng.standard_normal(N) for _ in range(starts)] + list(np.eye(N)) + list(-np.eye(N))
    best = 0.0
    for x0 in x0s:
        res = scipy.optimize.minimize(objective, x0, jac=True, method="L-BFGS-B")
        best = max(best, -float(res.fun))
    return best


def gap(rho: float | np.ndarray, lam: float, J: float, beta: float) -> float | np.ndarray:
    """g(rho) = rho (sqrt(lam) - beta rho)^2 / (2 (J + beta rho)) (THEORY.md section 4)."""
    return rho * (math.sqrt(lam) - beta * rho) ** 2 / (2.0 * (J + beta * rho))


def path_gap(rho: float | np.ndarray, lam: float, beta: float) -> float | np.ndarray:
    """g'(rho) = rho (sqrt(lam) - beta rho) / 2: the path-length form of the theorem closes on
    B(w, rho) iff ||r|| <= g'(rho) (docs/theory.md section 18)."""
    return rho * (math.sqrt(lam) - beta * rho) / 2.0


def _grid_max(f: Callable[[Any], Any], rho_max: float, points: int) -> float:
    """max of f over [0, rho_max]: a dense grid refined by a bounded scalar search around the
    best grid point; a lower estimate of the max (any rho gives one), ~1e-12 relative."""
    rho = np.linspace(0.0, rho_max, points)
    values = np.asarray(f(rho))
    i = int(values.argmax())
    lo, hi = rho[max(i - 1, 0)], rho[min(i + 1, points - 1)]
    res = scipy.optimize.minimize_scalar(
        lambda t: -float(f(t)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-14 * rho_max},
    )
    return max(float(values[i]), -float(res.fun))


def residual_threshold_grid(
    lam: float, J: float, beta: float, points: int = 200_001, rho_cap: float = math.inf
) -> float:
    """r* = max over 0 < rho < min(sqrt(lam)/beta, rho_cap) of g(rho) (THEORY.md section 4) by
    :func:`_grid_max`. ``rho_cap``: the radius of the ball a proven beta holds on (the
    constrained r*)."""
    rho_max = min(math.sqrt(lam) / beta, rho_cap)
    return _grid_max(lambda r: gap(r, lam, J, beta), rho_max, points)


def path_threshold_grid(
    lam: float, beta: float, points: int = 200_001, rho_cap: float = math.inf
) -> float:
    """The path certificate's r* = max over 0 < rho < min(sqrt(lam)/beta, rho_cap) of g'(rho)
    (:func:`path_gap`) by :func:`_grid_max`."""
    rho_max = min(math.sqrt(lam) / beta, rho_cap)
    return _grid_max(lambda r: path_gap(r, lam, beta), rho_max, points)


@dataclass(frozen=True)
class GDRun:
    """An independent GD run on L = 1/2 ||F(w) - y||^2 (w_{t+1} = w_t - eta_t grad L(w_t))."""

    weights: list[Tensor]
    losses: np.ndarray
    distances: np.ndarray
    pl_ratios: np.ndarray
    residual_norms: np.ndarray


def run_gd(F: FlatMap, w0: Tensor, steps: int, step_at: Callable[[int], float]) -> GDRun:
    """``steps`` GD steps with step ``step_at(t)`` at step t; records L_t, ||w_t - w0||,
    ||grad L||^2 / (2 L) (THEORY.md section 2) and ||r_t|| for t = 0..steps."""
    w = w0.detach().clone()
    ws, losses, dists, ratios, rns = [], [], [], [], []
    for t in range(steps + 1):
        loss, grad, r = F.loss_and_grad(w)
        ws.append(w)
        losses.append(loss)
        dists.append(float((w - w0).norm()))
        ratios.append(float(grad @ grad) / (2.0 * loss) if loss > 0 else math.nan)
        rns.append(float(r.norm()))
        if t < steps:
            w = w - step_at(t) * grad
    return GDRun(ws, np.array(losses), np.array(dists), np.array(ratios), np.array(rns))


def ball_points(
    center: Tensor, radius: float, count: int, generator: torch.Generator
) -> list[Tensor]:
    """``count`` random points of the closed ball B(center, radius): half on the sphere, half
    uniform in the ball (radius * U^(1/m))."""
    m = center.numel()
    pts = []
    for j in range(count):
        d = torch.randn(m, generator=generator, dtype=torch.float64)
        d = d / d.norm()
        s = 1.0 if j % 2 == 0 else float(torch.rand((), generator=generator, dtype=torch.float64))
        pts.append(center + radius * s ** (1.0 / m) * d)
    return pts
