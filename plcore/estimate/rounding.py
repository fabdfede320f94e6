"""Running-error bounds of the evaluated F(w) and J(w) of a Dense/activation chain (theory 15.4).

The floating-point bounds of :mod:`plcore.estimate.psd` hold for the Jacobian and residual *as
evaluated*. This module bounds how far those are from the exact ones, so that the rigorous tier
speaks about the exact model on the stored data and weights:

    E_J >= ||J_computed - J_exact||_F,    E_F >= ||F_computed - F_exact||_2,
    E_r >= ||r_computed - r_exact||_2     (r = F - y, one more rounding per entry).

Model of arithmetic (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002,
ch. 3): |fl(x op y) - x op y| <= u |x op y| with u = 2^-53 (float64); a dot product of length n,
in any order, with or without FMA, has |fl(a.b) - a.b| <= gamma_n |a|.|b| (eq. (3.5)). Library
functions are ASSUMED (generous, checked against 50-digit mpmath in the tests): the computed
phi(x) is within :data:`LIB_ULPS` ulps of phi(x) (relative 2 u LIB_ULPS), the derivative autograd
computes for phi within :data:`DERIV_ABS_U` u max(1, sup|phi'|) absolutely; gelu's value within
:data:`GELU_ABS_U` u |x| more (torch's 1 + erf(x / sqrt 2) cancels for negative x: at x = -15 it
returns 0 for -1e-50); softplus, which torch replaces by x (derivative 1) above x = 20, adds
exp(-20) to both.

Elementwise propagation, with e_v >= |v_computed - v_exact| and V >= |v_computed| entrywise
(V = |v_mine| + 2 e_v covers the kernel's own evaluation, which may differ from this replay by
rounding only), for a Dense layer a = s h W^T + t b (fan-in n) and an activation y = phi(a):

    e_a = |s| e_h |W|^T + gamma_{n+4} (|s| H |W|^T + |t| |b|)
    e_y = phi1 e_a + 2 u LIB_ULPS |y| / (1 - 2 u LIB_ULPS)          (phi1 = sup |phi'|)

and backwards for the cotangent g of output c (g = e_c at the output; Dense: g_in = s g_out W
with fan-out n_out; activation: g_in = g_out . phi'(a)):

    e_{g_in} = |s| e_{g_out} |W| + gamma_{n_out+4} |s| G_out |W|
    e_{g_in} = e_{g_out} P + G_out (D + phi2 e_a) + u G_out P
               (P = phi1 + D >= |computed phi'|, D: the derivative's library error,
               phi2 = sup|phi''|)

The Jacobian blocks of a Dense layer are s g_out (x) h_in (weight) and t g_out (bias), so per
sample and output ||dJ||_F <= |s| (||e_g|| ||H_in|| + ||g_exact|| ||e_h||) + |t| ||e_g||, plus
gamma_3 ||J||_F for the two roundings that form an entry of J from its factors. Summing squares
over samples, outputs and trainable layers gives E_J. Every bound is evaluated in float64 on
non-negative numbers and enlarged by (1 + gamma_{n+8}) per layer and (1 + 1e-6) at the end, which
covers its own rounding.

The other links of a chain (:mod:`plcore.estimate.rounding_chain`): Bias y = h + t b and
Binary add / sub with a constant c: e_y = e_h + gamma_3 (H + |t b|), cotangent exact; Scale
y = h (t c) and Binary mul / div by c: e_y = |tc| e_h + gamma_3 |tc| H, backward alike with G
(gradient of a trainable Scale: t g (.) h, bounded like the Dense weight); identity links
(nn.Identity, Flatten, layout ops that do not change a flat value): nothing.

Scope: straight chains of those links on flat float64 inputs: JSON MLP specs (either
parameterization, any layers frozen, so also the affine last-layer fine-tuning of a frozen
feature map) and ONNX graphs that import as such a chain (Gemm / MatMul + Add MLPs). Other models
(convolutions, normalization layers, branching graphs) have no running-error bound here:
:func:`evaluation_error_bound` returns None and the rigorous tier is refused for them
(:func:`evaluation_bound_refusal` says why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import torch
from torch import Tensor, nn

from plcore.estimate.activation_constants import activation_bounds
from plcore.estimate.psd import U64, gamma, sqrt_up
from plcore.estimate.rounding_chain import COVERED_ACTIVATIONS, Link, chain_links
from plcore.kernel._checks import resolve_params
from plcore.models import onnx_ops as ops
from plcore.models.base import Model
from plcore.models.layers import Activation, Bias, Dense, Scale

__all__ = ["COVERED_ACTIVATIONS", "EvaluationError", "evaluation_error_bound"]

#: assumed accuracy of torch's float64 elementwise functions (tanh, erf, exp, sin, ...), in ulps
LIB_ULPS: Final = 4
#: assumed absolute accuracy of the derivative autograd evaluates, in units of u max(1, sup|phi'|)
DERIV_ABS_U: Final = 64
#: gelu's value is also allowed GELU_ABS_U u |x| absolutely (cancellation in 1 + erf(x/sqrt 2))
GELU_ABS_U: Final = 4
#: torch's softplus returns x (derivative 1) above x = 20: absolute error <= exp(-20)
_SOFTPLUS_THRESHOLD_ERR: Final = math.nextafter(math.exp(-20.0), math.inf)
#: absolute floor per entry: covers underflow to subnormals (a few units of 2^-1074)
_TINY: Final = 2.0**-1000
_FINAL_SLACK: Final = 1e-6
_G3: Final = gamma(3)


@dataclass(frozen=True)
class EvaluationError:
    """Bounds on the rounding inside the evaluation of F and J (module docstring).

    Attributes:
        jacobian_fro: E_J >= ||J_computed - J_exact||_F.
        output: E_F >= ||F_computed - F_exact||_2.
        method: the argument, for reports.
    """

    jacobian_fro: float
    output: float
    method: str = (
        "running-error bound of the forward and backward passes (Higham 2002, ch. 3; "
        f"library functions within {LIB_ULPS} ulp assumed)"
    )

    def residual(self, residual_norm_computed: float) -> float:
        """E_r = E_F + u/(1-u) ||r_computed||: r = fl(F - y) adds one rounding per entry."""
        return _up(self.output + U64 / (1.0 - U64) * residual_norm_computed * (1.0 + 4 * U64))


def _up(x: float) -> float:
    return math.nextafter(x * (1.0 + _FINAL_SLACK), math.inf)


def evaluation_bound_refusal(model: Model) -> str | None:
    """Why :func:`evaluation_error_bound` has no bound for ``model`` (None when it has one)."""
    links, why = chain_links(model)
    return None if links is not None else why


def _inflate(x: Tensor, n: int) -> Tensor:
    return x * (1.0 + gamma(n + 8))


def _threshold_err(m: Activation, a: Tensor, e_a: Tensor) -> Tensor | float:
    """exp(-20) where softplus may have taken its x > 20 shortcut (the kernel's a <= a + 2 e_a)."""
    if m.name != "softplus":
        return 0.0
    return torch.where(a + 2.0 * e_a > 20.0, _SOFTPLUS_THRESHOLD_ERR, 0.0)


def _deriv_abs_err(m: Activation, d1: float, a: Tensor, e_a: Tensor) -> Tensor | float:
    """|computed phi'(a) - phi'(a)|: DERIV_ABS_U u max(1, sup|phi'|) (+ softplus' shortcut)."""
    if m.name == "identity":
        return 0.0
    return DERIV_ABS_U * U64 * max(1.0, d1) + _threshold_err(m, a, e_a)


def _value_err(m: Activation, y_abs: Tensor, a: Tensor, e_a: Tensor) -> Tensor:
    """|fl(phi(a)) - phi(a)| for |fl(phi(a))| <= y_abs: LIB_ULPS ulps, relative 2 u LIB_ULPS."""
    if m.name == "identity":
        return torch.zeros_like(y_abs)
    rel = 2.0 * U64 * LIB_ULPS
    err = y_abs * (rel / (1.0 - rel)) + _TINY + _threshold_err(m, a, e_a)
    if m.name == "gelu":  # x (1 + erf(x / sqrt 2)) / 2 cancels for x < 0: absolute u |x| terms
        err = err + GELU_ABS_U * U64 * (a.abs() + 2.0 * e_a)
    return err


class _Params:
    """Parameter values at w (trainable ones from the flat vector, frozen ones from the module)."""

    def __init__(self, model: Model, w: Tensor) -> None:
        self.values = model.unflatten(w)
        self.names = {id(p): n for n, p in model.module.named_parameters()}

    def get(self, mod: nn.Module, attr: str) -> tuple[Tensor, bool]:
        p = getattr(mod, attr)
        name = self.names[id(p)]
        if name in self.values:
            return self.values[name].detach().to(torch.float64), True
        return p.detach().to(torch.float64), False


def _factor(lk: Link, P: _Params) -> tuple[Tensor, float] | None:
    """(|multiplier|, relative rounding) of a Scale or a Binary mul / div link; None otherwise."""
    m = lk.module
    if isinstance(m, Scale):
        c, _ = P.get(m, "weight")
        return (m.scale * c).abs(), _G3
    if isinstance(m, ops.Binary) and m.kind in ("mul", "div"):
        assert lk.const is not None
        c = lk.const.abs()
        return (c if m.kind == "mul" else 1.0 / c), _G3
    return None


def _forward(lk: Link, P: _Params, h: Tensor, e: Tensor) -> tuple[Tensor, Tensor] | None:
    """(computed value, error bound) after one link (module docstring); None: not covered."""
    m = lk.module
    H = h.abs() + 2.0 * e
    if isinstance(m, Dense):
        W, _ = P.get(m, "weight")
        Wa, s = W.abs(), abs(m.weight_scale)
        rnd = s * (H @ Wa.T)
        y = m.weight_scale * (h @ W.T)
        if m.bias is not None:
            b, _ = P.get(m, "bias")
            rnd = rnd + abs(m.bias_scale) * b.abs()
            y = y + m.bias_scale * b
        n_in = m.in_features
        return y, _inflate(s * (e @ Wa.T) + gamma(n_in + 4) * rnd, n_in)
    if isinstance(m, Activation):
        d1, _ = activation_bounds(m.info)
        y, prop = m(h), d1 * e
        # |y_kernel| <= |y_mine| + 2 (propagated + library error): the library term's base
        y_abs = y.abs() * 1.01 + 2.0 * prop
        if m.name == "gelu":
            y_abs = y_abs + 4.0 * GELU_ABS_U * U64 * (h.abs() + 2.0 * e)
        return y, _inflate(prop + _value_err(m, y_abs, h, e), 4)
    if isinstance(m, Bias):
        b, _ = P.get(m, "bias")
        return h + m.scale * b, _inflate(e + _G3 * (H + abs(m.scale) * b.abs()), 4)
    f = _factor(lk, P)
    if f is not None:
        y = h * (m.scale * P.get(m, "weight")[0]) if isinstance(m, Scale) else m(h, lk.const)
        return y, _inflate(f[0] * e + f[1] * f[0] * H, 4)
    if isinstance(m, ops.Binary):  # add / sub with a constant
        assert lk.const is not None
        y = m(lk.const, h) if lk.const_first else m(h, lk.const)
        return y, _inflate(e + _G3 * (H + lk.const.abs()), 4)
    y = m(h)
    if y.shape != h.shape or not torch.equal(y, h):
        return None  # a layout step that moves entries of a flat value: not covered
    return y, e


def evaluation_error_bound(
    model: Model, X: Tensor, *, params: Tensor | None = None
) -> EvaluationError | None:
    """E_J >= ||J_computed - J_exact||_F and E_F >= ||F_computed - F_exact||_2 at w (module
    docstring for the formulas); None when the model is not a chain this module covers."""
    links, _ = chain_links(model)
    if links is None:
        return None
    dt = torch.float64
    P = _Params(model, resolve_params(model, params, device=X.device))
    h = X.reshape(X.shape[0], -1).to(dt)
    e = torch.zeros_like(h)
    inputs: list[tuple[Tensor, Tensor]] = []  # (computed value, error) entering each link
    for lk in links:
        inputs.append((h, e))
        step = _forward(lk, P, h, e)
        if step is None:
            return None
        h, e = step
    output = float(e.norm()) * (1.0 + gamma(e.numel() + 2))

    # backward, one cotangent per output c: g has shape (n, k, width)
    n, k = h.shape[0], h.shape[1]
    g = torch.eye(k, dtype=dt, device=h.device).expand(n, k, k).clone()
    eg = torch.zeros_like(g)
    total = torch.zeros((), dtype=dt, device=h.device)
    for lk, (h_in, e_in) in zip(reversed(links), reversed(inputs), strict=True):
        m = lk.module
        G = g.abs() + 2.0 * eg
        eg_n, G_n = eg.norm(dim=2), G.norm(dim=2)
        Gx = g.abs() + eg  # >= |g_exact|
        if isinstance(m, Dense | Bias):
            attr, t = ("bias", m.bias_scale) if isinstance(m, Dense) else ("bias", m.scale)
            if getattr(m, attr, None) is not None and P.get(m, attr)[1]:
                total = total + ((abs(t) * (eg_n + _G3 * G_n)) ** 2).sum()
        if isinstance(m, Dense):
            W, trainable = P.get(m, "weight")
            s = abs(m.weight_scale)
            if trainable:
                H_n = (h_in.abs() + 2.0 * e_in).norm(dim=1).unsqueeze(1)
                eh_n = e_in.norm(dim=1).unsqueeze(1)
                dW = s * (eg_n * H_n + Gx.norm(dim=2) * eh_n) + _G3 * s * G_n * H_n
                total = total + (dW**2).sum()
            Wa, n_out = W.abs(), m.out_features
            eg = _inflate(s * (eg @ Wa) + gamma(n_out + 4) * s * (G @ Wa), n_out)
            g = m.weight_scale * (g @ W)
        elif isinstance(m, Activation):
            d1, d2 = activation_bounds(m.info)
            D = _deriv_abs_err(m, d1, h_in, e_in) + torch.zeros_like(h_in)
            Pd = (d1 + D).unsqueeze(1)
            local = (D + d2 * e_in).unsqueeze(1)  # (n, 1, width)
            eg = _inflate(eg * Pd + Gx * local + U64 * G * Pd, 4)
            a_ = h_in.detach().clone().requires_grad_(True)
            (deriv,) = torch.autograd.grad(m(a_).sum(), a_)
            g = g * deriv.unsqueeze(1)
        elif (f := _factor(lk, P)) is not None:
            if isinstance(m, Scale) and P.get(m, "weight")[1]:
                H = (h_in.abs() + 2.0 * e_in).unsqueeze(1)
                dc = abs(m.scale) * ((eg * H + Gx * e_in.unsqueeze(1)).norm(dim=2))
                total = total + ((dc + _G3 * abs(m.scale) * (G * H).norm(dim=2)) ** 2).sum()
            eg = _inflate(f[0] * eg + f[1] * f[0] * G, 4)
            if isinstance(m, Scale):
                g = g * (m.scale * P.get(m, "weight")[0])
            else:
                assert isinstance(m, ops.Binary) and lk.const is not None
                g = g * lk.const if m.kind == "mul" else g / lk.const
        elif isinstance(m, ops.Binary) and m.kind == "sub" and lk.const_first:
            g = -g
    terms = n * k * len(links) + 2
    jac = sqrt_up(float(total) * (1.0 + gamma(terms)))
    return EvaluationError(jacobian_fro=_up(jac), output=_up(output))


def corrected_lambda_min_lower(lambda_lower: float, jacobian_error: float) -> float:
    """lambda_min(J_exact J_exact^T) >= (sqrt(lambda_lower) - E_J)^2 when positive, else 0:
    Weyl's inequality for singular values, sigma_min(J_exact) >= sigma_min(J_comp) -
    ||J_exact - J_comp||_2 and ||.||_2 <= ||.||_F; rounded down."""
    if not lambda_lower > 0:
        return 0.0
    root = math.nextafter(math.sqrt(lambda_lower), -math.inf) * (1.0 - 2 * U64) - jacobian_error
    if not root > 0:
        return 0.0
    return math.nextafter(root * root * (1.0 - 4 * U64), -math.inf)


def corrected_upper(value_upper: float, error: float) -> float:
    """||x_exact|| <= ||x_comp||_upper + E (triangle inequality), rounded up."""
    return math.nextafter((value_upper + error) * (1.0 + 4 * U64), math.inf)


def residual_upper(residual_norm_upper: float, output_error: float) -> float:
    """||r_exact|| <= ||r_comp||_upper + E_F + u/(1-u) ||r_comp|| (r = fl(F - y) rounds once
    per entry), rounded up."""
    return corrected_upper(
        residual_norm_upper, EvaluationError(0.0, output_error).residual(residual_norm_upper)
    )
