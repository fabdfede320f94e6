"""A proven upper bound on sup_{B(w, rho)} ||H_F|| and sup_B ||J||_2 for MLP chains.

Applies to ``model.module`` = ``nn.Sequential`` of :class:`plcore.models.layers.Dense` and
:class:`~plcore.models.layers.Activation` modules (any order; ``nn.Identity`` and
``nn.Flatten`` are skipped, being the identity on flat inputs) with twice-differentiable
activations, on flat inputs. Anything else (ReLU, convolutions, other modules) gives ``None``.
The full derivation is in docs/theory-beta-bound.md; in short:

Write the chain as z_0 = x, z_j = G_j(theta_j, z_{j-1}), f = z_J. Let u, v be unit directions in
parameter space (u_j: the part of u on module j's parameters, u_{<j}: the part on earlier ones).
For any point w' in the ball, every weight moves by ||Delta_j||_2 <= ||Delta_j||_F <= rho and
every bias by at most rho. All bounds below hold at every w' in B(w, rho) simultaneously.

Forward bounds (per sample x), with nW_j = ||W_j||_2 + rho, nb_j = ||b_j|| + rho:
  Z_j >= ||z_j||:   Dense  Z_j = s_j nW_j Z_{j-1} + t_j nb_j     (s = weight_scale, t = bias_scale)
                    Act    Z_j = min(|phi(0)| sqrt(d_j) + phi1 Z_{j-1}, sup|phi| sqrt(d_j))
  T_j >= ||Dz_j[u]||:
                    Dense  Dz_j[u] = s U_j z_{j-1} + t u_{b,j} + s (W_j + Delta_j) Dz_{j-1}[u], so
                           by Cauchy-Schwarz over (||u_j||, ||u_{<j}||):
                           T_j = sqrt(s^2 Z_{j-1}^2 + t^2 + (s nW_j T_{j-1})^2)
                    Act    T_j = phi1 T_{j-1}                  (phi1 = sup|phi'|, phi2 = sup|phi''|)
  S_j >= ||D^2 z_j[u, v]|| (forward form):
                    Dense  S_j = s T_{j-1} + s nW_j S_{j-1}
                           (||U_j|| ||Dz[v]|| + ||V_j|| ||Dz[u]|| <= T_{j-1} by Cauchy-Schwarz)
                    Act    S_j = phi2 T_{j-1}^2 + phi1 S_{j-1}
                           (||phi'' . a . b|| <= phi2 ||a|| ||b||)

Adjoint form (second-order chain rule): for a unit c in R^k and lambda_j = d(c . f)/dz_j,
  c . D^2 f[u, v] = sum_j lambda_j . D^2 G_j[(u_j, Dz_{j-1}[u]), (v_j, Dz_{j-1}[v])],
where the local second derivative is s (U_j Dz_{j-1}[v] + V_j Dz_{j-1}[u]) for Dense (W z is
bilinear, the bias enters linearly) and phi''(z_{j-1}) . Dz_{j-1}[u] . Dz_{j-1}[v] for Act. With
A2_j >= ||lambda_j||_2 and Ai_j >= ||lambda_j||_inf (backward: A2_J = Ai_J = 1;
Dense: A2_{j-1} = s nW_j A2_j, Ai_{j-1} = s min((max_i ||W_j[:, i]||_2 + rho) A2_j,
max_i ||W_j[:, i]||_1 Ai_j + rho A2_j); Act: multiply both by phi1):
  ||D^2 f[u, v]|| <= sum_{Dense j} s_j A2_j T_{j-1} + sum_{Act j} phi2 Ai_j T_{j-1}^2.
The per-sample bound is B_x = min(adjoint form, S_J) and G_x = T_J.

Across samples: ||H_F[u, u]||^2 = sum_x ||D^2 f(x)[u, u]||^2, so
  sup_B ||H_F|| <= beta_upper = sqrt(sum_x B_x^2),
  sup_B ||J||_2 <= jacobian_upper = sqrt(sum_x G_x^2).
beta_F (the Lipschitz constant of J in spectral norm on the convex ball) is <= sup_B ||H_F||.

Width scaling (NTK parameterization, s = sigma / sqrt(fan_in)): for one hidden layer with a linear
output the adjoint form is O(1 / sqrt(width)) (Ai at the hidden layer is s_out times a column
norm of W_out); with two or more hidden layers Ai at earlier hidden layers is O(1) in the worst
case over the ball, so the bound is O(1) although the true ||H_F|| decays.

Shared modules or parameters (a submodule applied twice, tied weights): the chain above treats
every module as its own block of parameters, so it does not bound such a model; None is returned
(:func:`shared_structure`).

Floating point (docs/theory.md, section 15): ||W_j||_2 is bounded from above by a shifted Cholesky
certificate of W_j's Gram matrix (:func:`plcore.estimate.psd.spectral_norm_upper`), not by an SVD;
the activation constants are closed forms (or a Newton maximiser) evaluated in float64 and rounded
up by :data:`ACTIVATION_ULPS` ulps (:func:`activation_bounds`, checked against 50-digit
maximisation in the tests). Every other quantity is a monotone expression (sums, products, square
roots, minima) of non-negative float64 numbers, each rounded with relative error <= u = 2^-53, plus
norms that are sums of at most max(d, width) squares (relative error <= gamma_width): with fewer
than 10^6 roundings on any chain, the relative error is below 10^6 u < 1.2e-10, covered by the
final enlargement by :data:`SAFETY`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import torch
from torch import Tensor, nn

from plcore.errors import OptionsError
from plcore.estimate.activation_constants import activation_bounds
from plcore.estimate.psd import spectral_norm_upper
from plcore.kernel._checks import resolve_params
from plcore.models.base import Model
from plcore.models.layers import Activation, Dense

#: relative enlargement of the final bounds, covering float64 rounding in the recursion
SAFETY: Final = 1e-9

#: sup_x |phi(x)| for bounded activations (the rest are unbounded)
_SUP_ABS: Final = {"tanh": 1.0, "erf": 1.0, "sigmoid": 1.0, "sin": 1.0}


@dataclass(frozen=True)
class AnalyticBound:
    """Proven upper bounds over the ball B(w, rho) (module docstring).

    Attributes:
        beta_upper: >= sup_B ||H_F|| >= beta_F (Lipschitz constant of J in spectral norm).
        jacobian_upper: >= sup_B ||J||_2 = L_F.
        method: ``"layerwise-spectral"``.
        details: per-sample maxima, which form won, the width-scaling statement.
    """

    beta_upper: float
    jacobian_upper: float
    method: str = "layerwise-spectral"
    details: dict[str, Any] = field(default_factory=dict)


def shared_structure(module: nn.Module) -> str | None:
    """Why ``module`` shares a submodule or a parameter between two places (None if it does not).

    nn.Module.children() and parameters() list a shared object once, so a chain built from them
    would see a module applied twice as applied once (and bound a different function). Detected
    by walking ``_modules`` with duplicates kept and comparing identities.
    """
    seen_mod: dict[int, str] = {}
    seen_par: dict[int, str] = {}

    def walk(mod: nn.Module, prefix: str) -> str | None:
        for name, p in mod._parameters.items():
            if p is None:
                continue
            key = f"{prefix}{name}"
            if id(p) in seen_par:
                return f"parameter {key!r} is the same tensor as {seen_par[id(p)]!r} (tied)"
            seen_par[id(p)] = key
        for name, child in mod._modules.items():
            if child is None:
                continue
            key = f"{prefix}{name}"
            if id(child) in seen_mod:
                return f"module {key!r} is the same module as {seen_mod[id(child)]!r} (shared)"
            seen_mod[id(child)] = key
            why = walk(child, key + ".")
            if why is not None:
                return why
        return None

    return walk(module, "")


def _chain(model: Model) -> list[nn.Module] | None:
    module = model.module
    if not isinstance(module, nn.Sequential) or len(model.input_shape) != 1:
        return None
    if shared_structure(module) is not None:
        return None
    # nn.Identity and nn.Flatten are the identity on (n, d) inputs: drop them
    layers = [m for m in module._modules.values() if not isinstance(m, nn.Identity | nn.Flatten)]
    if not any(isinstance(m, Dense) for m in layers):
        return None
    for m in layers:
        if isinstance(m, Activation):
            if not m.info.twice_differentiable or m.info.d2_sup is None:
                return None
        elif not isinstance(m, Dense):
            return None
    return layers


def has_analytic_bound(model: Model) -> bool:
    """Whether :func:`beta_upper_bound` applies to the model (a chain of Dense and smooth
    Activation layers on flat inputs, nothing shared)."""
    return _chain(model) is not None


def beta_upper_bound(
    model: Model,
    X: Tensor,
    rho: float,
    *,
    params: Tensor | None = None,
    norm_cache: dict[int, float] | None = None,
) -> AnalyticBound | None:
    """Upper bounds on sup_{B(w, rho)} ||H_F|| and sup_B ||J||_2 (derivation: module docstring).

    Returns None when the model is not a chain of Dense and twice-differentiable Activation
    layers on flat inputs (e.g. ReLU, convolutions), or when a module or a parameter is shared
    (:func:`shared_structure`): no bound is known then.
    ``norm_cache`` (layer index -> upper bound of ||W_j||_2) is read and filled when given: the
    caller keeps one per parameter vector, since the norms do not depend on rho.
    """
    if not (rho >= 0) or math.isinf(rho):
        raise OptionsError(f"rho must be finite and >= 0, got {rho}")
    layers = _chain(model)
    if layers is None:
        return None
    w = resolve_params(model, params, device=X.device)
    values = model.unflatten(w)
    own = dict(model.module.named_parameters())

    prefix = {id(mod): name for name, mod in model.module.named_children()}

    def param(mod: nn.Module, name: str) -> Tensor:
        key = f"{prefix[id(mod)]}.{name}"
        return (values[key] if key in values else own[key].detach()).to(w)

    dev, dt = w.device, torch.float64
    x_norm = X.reshape(X.shape[0], -1).to(dt).norm(dim=1)
    n = x_norm.shape[0]
    zero = torch.zeros(n, dtype=dt, device=dev)

    # weights-only constants (same for every sample) and the forward recursion
    Z, T, S = x_norm, zero, zero
    T_in: list[Tensor] = []  # T_{j-1}, the bound on ||Dz|| entering module j
    consts: list[dict[str, float]] = []
    for j, m in enumerate(layers):
        T_in.append(T)
        if isinstance(m, Dense):
            W = param(m, "weight")
            s, t = m.weight_scale, m.bias_scale
            nW0 = None if norm_cache is None else norm_cache.get(j)
            if nW0 is None:
                nW0 = spectral_norm_upper(W)
                if norm_cache is not None:
                    norm_cache[j] = nW0
            nW = nW0 + rho
            has_b = m.bias is not None
            nb = float(param(m, "bias").norm()) + rho if has_b else 0.0
            tb = t if has_b else 0.0
            consts.append(
                {
                    "s": s,
                    "nW": nW,
                    "col2": float(W.norm(dim=0).max()),
                    "col1": float(W.abs().sum(dim=0).max()),
                }
            )
            Z, T, S = (
                s * nW * Z + tb * nb,
                torch.sqrt((s * Z) ** 2 + tb**2 + (s * nW * T) ** 2),
                s * T + s * nW * S,
            )
        else:
            assert isinstance(m, Activation)
            d1, d2 = activation_bounds(m.info)
            phi0 = abs(float(m.forward(torch.zeros(1, dtype=dt))[0]))
            consts.append({"d1": d1, "d2": d2, "phi0": phi0})
            dim = _dim_before(layers, j, int(model.input_shape[0]))
            Z = phi0 * math.sqrt(dim) + d1 * Z
            if m.name in _SUP_ABS:
                Z = torch.clamp(Z, max=_SUP_ABS[m.name] * math.sqrt(dim))
            T, S = d1 * T, d2 * T_in[j] ** 2 + d1 * S
    T_out, S_forward = T, S

    # backward (adjoint) recursion: weights only
    A2, Ai = 1.0, 1.0
    adjoint = zero.clone()
    for j in range(len(layers) - 1, -1, -1):
        m, c = layers[j], consts[j]
        if isinstance(m, Dense):
            adjoint = adjoint + c["s"] * A2 * T_in[j]
            A2, Ai = (
                c["s"] * c["nW"] * A2,
                c["s"] * min((c["col2"] + rho) * A2, c["col1"] * Ai + rho * A2),
            )
        else:
            adjoint = adjoint + c["d2"] * Ai * T_in[j] ** 2
            A2, Ai = c["d1"] * A2, c["d1"] * Ai
        Ai = min(Ai, A2)

    per_sample = torch.minimum(adjoint, S_forward)
    beta = float(per_sample.norm()) * (1.0 + SAFETY)
    jac = float(T_out.norm()) * (1.0 + SAFETY)
    n_hidden = sum(isinstance(m, Dense) for m in layers) - 1
    linear_output = isinstance(layers[-1], Dense)
    return AnalyticBound(
        beta_upper=beta,
        jacobian_upper=jac,
        details={
            "rho": rho,
            "per_sample_hessian_max": float(per_sample.max()),
            "per_sample_jacobian_max": float(T_out.max()),
            "adjoint_form_used": int((adjoint <= S_forward).sum()),
            "forward_form_used": int((adjoint > S_forward).sum()),
            "n_dense_layers": n_hidden + 1,
            "width_scaling": (
                "O(1/sqrt(width)) for one hidden layer with linear output (NTK parameterization)"
                if n_hidden <= 1 and linear_output
                else "O(1) in the width (two or more hidden layers, or an output activation)"
            ),
        },
    )


def _dim_before(layers: list[nn.Module], j: int, input_dim: int) -> int:
    for i in range(j - 1, -1, -1):
        m = layers[i]
        if isinstance(m, Dense):
            return m.out_features
    return input_dim
