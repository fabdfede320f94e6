"""Running-error steps of a LayerNorm link (docs/theory.md, section 15, "LayerNorm").

Part of :mod:`plcore.estimate.rounding`, same notation: e_v >= |v_comp - v_exact| and
V = |v_mine| + 2 e_v >= |v_comp| entrywise; forward values (n, ...), cotangents (n, k, ...).

The step is y = (x - m) / s over a slice of D entries (the trailing axes from ``axis``), with
m = mean(x), delta = x - m, var = mean(delta^2), s = sqrt(var + eps) (``ops.LayerNormPlain`` and
the normalisation of the JSON ``LayerNorm``, which evaluate exactly these operations; the affine
part is a Scale and a Bias link of its own). Its Jacobian is symmetric,

    J = (P - y y^T / D) / s,    P = I - 1 1^T / D,    ||y||^2 / D = var / (var + eps) <= 1,

so ||J||_2 <= 1 / s and row i is (e_i - 1/D - y_i y / D) / s. The second derivative,

    g . D^2 y[v, e_i] = (-(g . P v) y_i - (g_i - mean g)(y . v) - (g . y)(P v)_i
                         + 3 (g . y)(y . v) y_i / D) / (D s^2),

is entrywise at most (4 |y_i| rms(g) rms(v) + rms(v)(|g_i| + mean|g|) + rms(g)(|v_i| + mean|v|))
/ s^2 (||y|| <= sqrt(D)), and in operator norm at most 6 ||v|| ||w|| / (sqrt(D) s^2).

Per slice, with H = |h_mine| + 2 e >= |h_comp| and every point z within 2 e of h_mine (the
kernel's input, the exact input and the segment between them):

* a_i = gamma_{D+4} mean(H) + u H_i >= |d_i - delta_i|: the computed centred value against the
  exact one (the mean of D terms errs by gamma_{D+2} mean(H), the subtraction by u);
* Delta_i = |delta_mine,i| + a_i + 2 e_i + 2 mean(e) >= |delta_i(z)|;
* sL <= s(z): sigma(z) = ||P z|| / sqrt(D) moves by at most ||P (z - h)|| <= 2 ||e|| /
  sqrt(D) and the replay's centred values are within ||a|| of exact, so sigma >= (||delta_mine|| -
  ||a|| - 2 ||e||) / sqrt(D), and sL = sqrt(max(0, that)^2 + eps);
* the computed variance errs by dvar = gamma_{D+2} mean((Delta + a)^2) + mean(a (2 Delta + a));
  s_c = fl(sqrt(fl(var_c + eps))) by ds = (1 + u)(dvar + u VC) / sL + u sU, with
  VC >= var_c + eps and sU >= s; sLc = sL - ds <= s_c.

Forward: y_c = fl(d / s_c) against the exact y(h_comp), then the exact map from h_comp to the
exact input (mean value theorem, row by row):

    e_y = (u (Delta + a) + a) / sLc + Delta ds / (sLc sL)
        + min((e + mean(e) + Y ||e|| / sqrt(D)) / sL, ||e|| / sL),     Y = min(Delta / sL, sqrt(D)).

Backward: autograd forms g_in = g / s_c - d (g . d) / (D s_c^3) - mean(same), a signed sum of
monomials in g, d, 1/s_c and 1/D with at most 2 D + 32 roundings on any path (two nested sums
of D terms), so it errs by gamma_{2D+32} times the same sum in absolute values; the computed d
and s_c move the exact formula by E2 + mean(E2); J moves between h_comp and the exact input by
the entrywise second-derivative bound above with v = e, s >= sL and |y_i| <= Y_i (the smaller of
that and its operator-norm form); and the cotangent's own error passes through J at the exact
input like the forward propagation:

    E2 = G ds / (sLc sL) + (a S_(Delta+a) + Delta S_a) / (D sLc^3) + 3 Delta S_Delta ds / (D sLc^4),
    S_v = sum_j v_j G_j.

Every bound is evaluated in float64 on non-negative numbers and enlarged like the other links;
lower bounds (sL, sLc) are shrunk by a relative 1e-6. A slice whose sLc is not positive gets an
infinite bound, which refuses the rigorous tier downstream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from plcore.estimate.psd import U64, gamma
from plcore.estimate.rounding_spatial import inflate
from plcore.models import onnx_ops as ops

__all__ = ["layernorm_backward", "layernorm_forward"]

_SHRINK = 1.0 - 1e-6


def _norm(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return torch.linalg.vector_norm(x, dim=dims, keepdim=True)


def _finite(x: Tensor) -> Tensor:
    """NaN (0 / 0, 0 * inf where a lower bound vanished) becomes +inf: no bound."""
    return torch.where(torch.isnan(x), torch.full_like(x, math.inf), x)


@dataclass(frozen=True)
class _Slice:
    """Per-slice bounds of one LayerNorm input (module docstring); reductions keep their axes."""

    dims: tuple[int, ...]
    D: int
    a: Tensor
    Delta: Tensor
    e_mean: Tensor
    e_norm: Tensor
    sL: Tensor
    sLc: Tensor
    ds: Tensor

    def propagate(self, e: Tensor, dims: tuple[int, ...], Y: Tensor) -> Tensor:
        """Entrywise bound of |J v| for |v| <= e, J at any point within 2 e_in of the replay."""
        n_e = inflate(_norm(e, dims), self.D)
        rows = e + inflate(e.mean(dim=dims, keepdim=True), self.D) + Y * n_e / math.sqrt(self.D)
        return torch.minimum(rows, n_e) / self.sL_at(dims)

    def sL_at(self, dims: tuple[int, ...]) -> Tensor:
        return self.sL if dims == self.dims else self.sL.unsqueeze(1)


def _slice(m: ops.LayerNormPlain, h: Tensor, e: Tensor) -> _Slice:
    ax = m.axis % h.ndim
    dims = tuple(range(ax, h.ndim))
    D = math.prod(h.shape[ax:])
    root_d = math.sqrt(D)

    def mean_up(x: Tensor) -> Tensor:
        return inflate(x.mean(dim=dims, keepdim=True), D)

    def norm_up(x: Tensor) -> Tensor:
        return inflate(_norm(x, dims), D)

    H = h.abs() + 2.0 * e
    a = inflate(gamma(D + 4) * mean_up(H) + U64 * H, 4)
    e_mean = mean_up(e)
    delta_mine = h - h.mean(dim=dims, keepdim=True)
    Delta = inflate(delta_mine.abs() + a + 2.0 * e + 2.0 * e_mean, 4)
    e_norm = norm_up(e)
    spread = _norm(delta_mine, dims) * _SHRINK - norm_up(a) - 2.0 * e_norm
    sigma_low = (spread * _SHRINK / root_d).clamp_min(0.0)
    sL = torch.sqrt(sigma_low**2 + m.eps) * _SHRINK
    Da = Delta + a
    VC = inflate(mean_up(Da**2) * (1.0 + gamma(D + 2)) + m.eps, 4)
    dvar = inflate(gamma(D + 2) * mean_up(Da**2) + mean_up(a * (2.0 * Delta + a)), 4)
    sU = inflate(torch.sqrt(mean_up(Delta**2) + m.eps), 4)
    ds = inflate((1.0 + U64) * (dvar + U64 * VC) / sL + U64 * sU, 4)
    sLc = ((sL - ds) * _SHRINK).clamp_min(0.0)
    return _Slice(dims, D, a, Delta, e_mean, e_norm, sL, sLc, ds)


def _bounded_y(sl: _Slice) -> Tensor:
    """|y_i(z)| <= min(Delta_i / sL, sqrt(D)) at every z within 2 e of the replay."""
    return inflate(sl.Delta / sl.sL, 2).clamp_max(math.sqrt(sl.D))


def layernorm_forward(m: ops.LayerNormPlain, h: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
    """(computed y, e_y) of the normalisation (module docstring)."""
    sl = _slice(m, h, e)
    rnd = (U64 * (sl.Delta + sl.a) + sl.a) / sl.sLc + sl.Delta * sl.ds / (sl.sLc * sl.sL)
    prop = sl.propagate(e, sl.dims, _bounded_y(sl))
    return m(h), _finite(inflate(rnd + prop, sl.D))


def layernorm_backward(
    m: ops.LayerNormPlain, h_in: Tensor, e_in: Tensor, g: Tensor, eg: Tensor
) -> tuple[Tensor, Tensor]:
    """(g_in, e_{g_in}) of the normalisation for cotangents g of shape (n, k, ...)."""
    sl = _slice(m, h_in, e_in)
    gdims = tuple(d + 1 for d in sl.dims)
    D = sl.D

    def at_g(x: Tensor) -> Tensor:
        return x.unsqueeze(1)

    def sum_up(x: Tensor) -> Tensor:
        return inflate(x.sum(dim=gdims, keepdim=True), D)

    def mean_up(x: Tensor) -> Tensor:
        return inflate(x.mean(dim=gdims, keepdim=True), D)

    a, Delta, sLc, sL, ds = at_g(sl.a), at_g(sl.Delta), at_g(sl.sLc), at_g(sl.sL), at_g(sl.ds)
    G = g.abs() + 2.0 * eg
    Da = Delta + a
    S_da, S_a, S_d = sum_up(Da * G), sum_up(a * G), sum_up(Delta * G)
    # autograd's own rounding: gamma_{2D+32} times the monomials in absolute values
    row = G / sLc + Da * S_da / (D * sLc**3)
    rnd = gamma(2 * D + 32) * (row + mean_up(row))
    # the computed d and s_c against the exact delta and s of the kernel's input
    e2 = (
        G * ds / (sLc * sL)
        + (a * S_da + Delta * S_a) / (D * sLc**3)
        + 3.0 * Delta * S_d * ds / (D * sLc**4)
    )
    moved = rnd + e2 + mean_up(e2)
    # J between the kernel's input and the exact one (second derivative, row by row)
    Y = at_g(_bounded_y(sl))
    e_in_g, root_d = at_g(e_in), math.sqrt(D)
    rms_e, rms_G = at_g(sl.e_norm) / root_d, inflate(_norm(G, gdims), D) / root_d
    rows = 4.0 * Y * rms_G * rms_e + rms_e * (G + mean_up(G)) + rms_G * (e_in_g + at_g(sl.e_mean))
    moved = moved + torch.minimum(rows, 6.0 * root_d * rms_e * rms_G) / sL**2
    prop = sl.propagate(eg, gdims, Y)
    n, k = g.shape[0], g.shape[1]
    hk = h_in.unsqueeze(1).expand(n, k, *h_in.shape[1:]).reshape(n * k, *h_in.shape[1:])
    x = hk.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g_in,) = torch.autograd.grad(m(x), x, g.reshape(n * k, *g.shape[2:]))
    return g_in.reshape(g.shape), _finite(inflate(moved + prop, 2 * D))
