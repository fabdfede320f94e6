r"""The infinite-width neural tangent kernel of an NTK-parameterized MLP (erf and relu).

Network (CONTRACT.md, ``parameterization: "ntk"``): h^1 = (sigma_w / sqrt(d)) W^1 x + sigma_b b^1,
h^{l+1} = (sigma_w / sqrt(n_l)) W^{l+1} phi(h^l) + sigma_b b^{l+1} for l = 1..L, with L hidden
layers, a linear output layer f = h^{L+1}, and every entry of every W and b drawn from N(0, 1).

As all widths n_l -> infinity, K(w0) converges to Theta (x) I_k (Jacot, Gabriel & Hongler 2018;
Lee et al. 2019, whose recursion is restated here for this parameterization):

  Sigma^1(x, x')     = sigma_w^2 x . x' / d + sigma_b^2,              Theta^1 = Sigma^1,
  Sigma^{l+1}(x, x') = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2,
  dSigma^{l+1}(x, x') = sigma_w^2 E[phi'(u) phi'(v)],
  Theta^{l+1}        = Sigma^{l+1} + Theta^l * dSigma^{l+1},

where (u, v) ~ N(0, [[Sigma^l(x, x), Sigma^l(x, x')], [Sigma^l(x, x'), Sigma^l(x', x')]]).
Derivation sketch: the gradient of h^{l+1}_i with respect to W^{l+1}_{ij} is
(sigma_w / sqrt(n_l)) phi(h^l_j), whose inner product over j tends to sigma_w^2 E[phi phi];
the bias adds sigma_b^2; the gradients with respect to earlier layers pass through
(sigma_w / sqrt(n_l)) W^{l+1} diag(phi'(h^l)), whose Gram tends to dSigma^{l+1} times the
earlier kernel Theta^l.

Gaussian expectations (S = the 2 x 2 covariance above):

* erf (Williams 1997): E[erf(u) erf(v)] = (2/pi) arcsin(2 S_uv / sqrt((1 + 2 S_uu)(1 + 2 S_vv))),
  E[erf'(u) erf'(v)] = (4/pi) / sqrt((1 + 2 S_uu)(1 + 2 S_vv) - 4 S_uv^2).
* relu (Cho & Saul 2009, arc-cosine kernels of degree 1 and 0), with
  theta = arccos(S_uv / sqrt(S_uu S_vv)):
  E[relu(u) relu(v)] = sqrt(S_uu S_vv) (sin theta + (pi - theta) cos theta) / (2 pi),
  E[1{u>0} 1{v>0}] = (pi - theta) / (2 pi).

The tests check both expectations against Monte Carlo and the NTK against K(w0) of wide
networks (error decaying like width^-1/2).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from plcore.errors import OptionsError, ShapeMismatchError

InfiniteWidthActivation = Literal["erf", "relu"]


def gaussian_expectations(
    activation: InfiniteWidthActivation, s_uu: Tensor, s_uv: Tensor, s_vv: Tensor
) -> tuple[Tensor, Tensor]:
    """(E[phi(u) phi(v)], E[phi'(u) phi'(v)]) for (u, v) ~ N(0, [[s_uu, s_uv], [s_uv, s_vv]]).

    Elementwise over broadcastable tensors; closed forms in the module docstring.
    """
    if activation == "erf":
        a = 1.0 + 2.0 * s_uu
        b = 1.0 + 2.0 * s_vv
        ratio = (2.0 * s_uv / torch.sqrt(a * b)).clamp(-1.0, 1.0)
        e_phi = (2.0 / math.pi) * torch.asin(ratio)
        e_dphi = (4.0 / math.pi) / torch.sqrt((a * b - 4.0 * s_uv * s_uv).clamp_min(1e-300))
        return e_phi, e_dphi
    if activation == "relu":
        norm = torch.sqrt(s_uu * s_vv).clamp_min(1e-300)
        cos_t = (s_uv / norm).clamp(-1.0, 1.0)
        theta = torch.arccos(cos_t)
        e_phi = norm * (torch.sin(theta) + (math.pi - theta) * cos_t) / (2.0 * math.pi)
        e_dphi = (math.pi - theta) / (2.0 * math.pi)
        return e_phi, e_dphi
    raise OptionsError(f"no closed-form NTK for activation {activation!r}; use 'erf' or 'relu'")


def infinite_width_kernels(
    X: Tensor,
    *,
    hidden_layers: int,
    activation: InfiniteWidthActivation,
    weight_std: float = 1.0,
    bias_std: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """(Sigma, Theta): the output NNGP and NTK kernels (n x n) of the recursion above.

    Args:
        X: inputs (n, d), float64.
        hidden_layers: L >= 0, the number of hidden layers (each followed by ``activation``).
        activation: ``"erf"`` or ``"relu"``.
        weight_std, bias_std: sigma_w and sigma_b of every layer (output layer included).
    """
    if X.ndim != 2:
        raise ShapeMismatchError(f"X must be (n, d) for an MLP, got shape {tuple(X.shape)}")
    if hidden_layers < 0:
        raise OptionsError(f"hidden_layers must be >= 0, got {hidden_layers}")
    sw2, sb2 = weight_std**2, bias_std**2
    sigma = sw2 * (X @ X.T) / X.shape[1] + sb2
    theta = sigma.clone()
    for _ in range(hidden_layers):
        diag = torch.diagonal(sigma)
        e_phi, e_dphi = gaussian_expectations(activation, diag[:, None], sigma, diag[None, :])
        sigma = sw2 * e_phi + sb2
        theta = sigma + theta * (sw2 * e_dphi)
    return sigma, theta


def infinite_width_ntk(
    X: Tensor,
    *,
    hidden_layers: int,
    activation: InfiniteWidthActivation,
    weight_std: float = 1.0,
    bias_std: float = 0.0,
    output_dim: int = 1,
) -> Tensor:
    """The infinite-width NTK Theta (x) I_k as an (N, N) matrix, N = n * k, sample-major.

    The limit of ``tangent_kernel(model, X)`` at initialisation for the MLP spec
    ``{"type": "mlp", "widths": [w] * hidden_layers, "activation": activation,
    "parameterization": "ntk", "weight_std": weight_std, "bias_std": bias_std}`` as w -> infinity.
    """
    _, theta = infinite_width_kernels(
        X,
        hidden_layers=hidden_layers,
        activation=activation,
        weight_std=weight_std,
        bias_std=bias_std,
    )
    return torch.kron(theta, torch.eye(output_dim, dtype=X.dtype, device=X.device))
