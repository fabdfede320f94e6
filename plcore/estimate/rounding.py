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

Image links (Conv2d, pooling, Pad, BatchNormFixed, layout permutations) are in
:mod:`plcore.estimate.rounding_spatial`, the LayerNorm normalisation in
:mod:`plcore.estimate.rounding_norm`. A merge y = a +/- b of two computed values (residual
connections, projection shortcuts, parallel branches): e_y = e_a + e_b + gamma_2 (|a| + |b|),
and backwards both inputs get the cotangent exactly. A join (Concat) copies its inputs: the
output's error bound is the inputs' bounds joined, and backwards each input gets its slice of the
cotangent and of its bound, exactly. A value read by c links gets the sum of
their cotangents, which autograd forms in some order: e = sum_j e_j + gamma_c sum_j (|g_j| +
2 e_j). The pass also returns T >= sum_i || |J|_i ||^2 with positional sums in absolute values,
which bounds the Gram rounding of kernels that sum over positions
(:func:`plcore.estimate.spectral.certified_spectrum`).

Scope: the graphs of :mod:`plcore.estimate.rounding_chain` (JSON MLP and layer-list specs, ONNX
graphs of the covered steps with any fan-out, merges by addition and joins, any layers frozen).
Other models (ReLU, max pooling, Softmax, products of computed values) have no running-error bound
here: :func:`evaluation_error_bound` returns None and the rigorous tier is refused for them
(:func:`evaluation_bound_refusal` says why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn

from plcore.estimate import rounding_spatial as sp
from plcore.estimate.activation_constants import activation_bounds
from plcore.estimate.psd import U64, gamma, sqrt_up
from plcore.estimate.rounding_chain import (
    COVERED_ACTIVATIONS,
    POOL_STEPS,
    Chain,
    Link,
    chain_links,
    layout_index,
)
from plcore.estimate.rounding_norm import layernorm_backward, layernorm_forward
from plcore.kernel._checks import resolve_params
from plcore.models import onnx_ops as ops
from plcore.models.base import Model
from plcore.models.layers import Activation, Bias, Conv2d, Dense, Scale

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
        abs_gram_trace: T >= sum over rows i of || |J|_i ||^2, where |J|_i is row i of J with
            every positional sum taken in absolute values (|s| sum_p |g_p| (x) |a_p| for a
            convolution weight, the same bound's base): the Gram rounding of a kernel that sums
            over positions is at most gamma_M T (``spectral.certified_spectrum``).
            None when not computed.
        method: the argument, for reports.
    """

    jacobian_fro: float
    output: float
    abs_gram_trace: float | None = None
    method: str = (
        "running-error bound of the forward and backward passes (Higham 2002, ch. 3; "
        f"library functions within {LIB_ULPS} ulp assumed)"
    )

    def residual(self, residual_norm_computed: float) -> float:
        """E_r = E_F + u/(1-u) ||r_computed||: r = fl(F - y) adds one rounding per entry."""
        return _up(self.output + U64 / (1.0 - U64) * residual_norm_computed * (1.0 + 4 * U64))


def _up(x: float) -> float:
    """x enlarged past its rounding; NaN (inf * 0 after an unbounded LayerNorm) is +inf."""
    return math.inf if math.isnan(x) else math.nextafter(x * (1.0 + _FINAL_SLACK), math.inf)


def evaluation_bound_refusal(model: Model) -> str | None:
    """Why :func:`evaluation_error_bound` has no bound for ``model`` (None when it has one)."""
    chain, why = chain_links(model)
    return None if chain is not None else why


_inflate = sp.inflate


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


def _forward(lk: Link, P: _Params, h: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
    """(computed value, error bound) after one link (module docstring)."""
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
    if isinstance(m, Conv2d):
        bc = P.get(m, "bias")[0] if m.bias is not None else None
        return sp.conv_forward(m, P.get(m, "weight")[0], bc, h, e)
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
    if isinstance(m, POOL_STEPS):
        return sp.pool_forward(m, h, e)
    if isinstance(m, ops.Pad):
        return m(h), Fn.pad(e, m.pads)
    if isinstance(m, ops.BatchNormFixed):
        return sp.batchnorm_forward(m, h, e)
    if isinstance(m, ops.LayerNormPlain):
        return layernorm_forward(m, h, e)
    idx = layout_index(m, tuple(h.shape))  # a layout step (checked by chain_links)
    assert idx is not None
    y = m(h)
    return y, sp.layout_forward(idx, tuple(y.shape), e)


@dataclass
class _Trace:
    """What the backward pass needs of one link: its input (value, bound)."""

    link: Link
    h: Tensor
    e: Tensor


Env = dict[str, tuple[Tensor, Tensor]]


def _merge(lk: Link, a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """y = a +/- b of two computed values: the sum of two terms (b negated for sub, which is
    exact), e_y = e_a + e_b + gamma_2 (|a| + |b|) (:func:`_accumulated`)."""
    hb, eb = b
    return _accumulated([a, (hb if lk.merge == "add" else -hb, eb)])


def _join_axis(lk: Link, ndim: int) -> int:
    assert isinstance(lk.module, ops.Concat)
    return lk.module.axis % ndim


def _join(lk: Link, parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """A Concat copies its inputs: the values and their error bounds are joined, exactly."""
    axis = _join_axis(lk, parts[0][0].ndim)
    return torch.cat([p[0] for p in parts], dim=axis), torch.cat([p[1] for p in parts], dim=axis)


def _split(lk: Link, env: Env, g: Tensor, eg: Tensor) -> list[tuple[Tensor, Tensor]]:
    """The cotangent of a Concat's output (n, k, *shape: one row per output) and its bound, cut
    into the inputs' slices, exactly (the transpose of a join)."""
    first = env[lk.ins[0]][0]
    axis = _join_axis(lk, first.ndim)
    sizes = [int(env[i][0].shape[axis]) for i in lk.ins]
    return list(zip(g.split(sizes, dim=axis + 1), eg.split(sizes, dim=axis + 1), strict=True))


def _forward_chain(chain: Chain, P: _Params, x: Tensor) -> Env:
    """(computed value, error bound) of every value of the chain; a link's input in it is all
    the backward pass needs of the forward one."""
    env: Env = {chain.input: (x, torch.zeros_like(x))}
    for lk in chain.links:
        if lk.merge == "concat":
            env[lk.out] = _join(lk, [env[i] for i in lk.ins])
        elif lk.merge is not None:
            env[lk.out] = _merge(lk, env[lk.ins[0]], env[lk.ins[1]])
        else:
            env[lk.out] = _forward(lk, P, *env[lk.ins[0]])
    return env


class _SumOfSquares:
    """sum of squared per-row block bounds, and how many terms were added (for its rounding)."""

    def __init__(self, like: Tensor) -> None:
        self.total = like.new_zeros(())
        self.terms = 0

    def add(self, x: Tensor) -> None:
        self.total = self.total + (x**2).sum()
        self.terms += x.numel()


def _reduce_to(x: Tensor, pshape: tuple[int, ...]) -> Tensor:
    """x (n, k, *tail) summed over the axes a parameter of shape pshape is broadcast along:
    (n, k, numel)."""
    n, k, tail = x.shape[0], x.shape[1], tuple(x.shape[2:])
    shape = pshape[1:] if len(pshape) == len(tail) + 1 else pshape
    target = (n, k) + (1,) * (len(tail) - len(shape)) + tuple(shape)
    return x.sum_to_size(target).reshape(n, k, -1)


def _param_blocks(
    tr: _Trace, P: _Params, g: Tensor, eg: Tensor, acc: _SumOfSquares, absq: _SumOfSquares
) -> None:
    """Add the bounds of ||dJ||^2 of the link's trainable parameters (module docstring) to acc,
    and those of the squared norms of |J| with positional sums of absolute values to absq."""
    m, h_in, e_in = tr.link.module, tr.h, tr.e
    G, Gx = g.abs() + 2.0 * eg, g.abs() + eg
    if isinstance(m, Dense):
        s = abs(m.weight_scale)
        eg_n, G_n = eg.norm(dim=2), G.norm(dim=2)
        if P.get(m, "weight")[1]:
            H_n = (h_in.abs() + 2.0 * e_in).norm(dim=1).unsqueeze(1)
            eh_n = e_in.norm(dim=1).unsqueeze(1)
            acc.add(s * (eg_n * H_n + Gx.norm(dim=2) * eh_n) + _G3 * s * G_n * H_n)
            absq.add(s * G_n * H_n)
        if m.bias is not None and P.get(m, "bias")[1]:
            acc.add(abs(m.bias_scale) * (eg_n + _G3 * G_n))
            absq.add(abs(m.bias_scale) * G_n)
    elif isinstance(m, Conv2d):
        W, trainable = P.get(m, "weight")
        blocks = []
        if trainable:
            blocks.append(sp.conv_weight_block(m, W, h_in, e_in, g, eg))
        if m.bias is not None and P.get(m, "bias")[1]:
            blocks.append(sp.conv_bias_block(m, g, eg))
        for err, absolute in blocks:
            acc.add(err)
            absq.add(absolute)
    elif isinstance(m, Bias | Scale):
        p, trainable = P.get(m, "bias" if isinstance(m, Bias) else "weight")
        if not trainable:
            return
        pshape = tuple(p.shape)
        q = max(1, math.prod(g.shape[2:]) // max(1, p.numel()))  # terms per parameter entry
        if isinstance(m, Bias):
            absolute = _reduce_to(G, pshape)
            blk = _reduce_to(eg, pshape) + gamma(q + 2) * absolute
        else:
            H, eh = (h_in.abs() + 2.0 * e_in).unsqueeze(1), e_in.unsqueeze(1)
            absolute = _reduce_to(G * H, pshape)
            blk = _reduce_to(eg * H + Gx * eh, pshape) + gamma(q + 3) * absolute
        acc.add(_inflate(abs(m.scale) * blk, q).norm(dim=2))
        absq.add(_inflate(abs(m.scale) * absolute, q).norm(dim=2))


def _backward(
    tr: _Trace, P: _Params, g: Tensor, eg: Tensor, acc: tuple[_SumOfSquares, _SumOfSquares]
) -> tuple[Tensor, Tensor]:
    """(g_in, e_{g_in}) before one link, adding its parameters' Jacobian bounds to acc."""
    lk, h_in, e_in = tr.link, tr.h, tr.e
    m = lk.module
    _param_blocks(tr, P, g, eg, *acc)
    G, Gx = g.abs() + 2.0 * eg, g.abs() + eg
    if isinstance(m, Dense):
        W = P.get(m, "weight")[0]
        Wa, s, n_out = W.abs(), abs(m.weight_scale), m.out_features
        e = _inflate(s * (eg @ Wa) + gamma(n_out + 4) * s * (G @ Wa), n_out)
        return m.weight_scale * (g @ W), e
    if isinstance(m, Conv2d):
        return sp.conv_backward(m, P.get(m, "weight")[0], tuple(h_in.shape), g, eg)
    if isinstance(m, Activation):
        d1, d2 = activation_bounds(m.info)
        D = _deriv_abs_err(m, d1, h_in, e_in) + torch.zeros_like(h_in)
        Pd = (d1 + D).unsqueeze(1)
        local = (D + d2 * e_in).unsqueeze(1)  # (n, 1, ...)
        a_ = h_in.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (deriv,) = torch.autograd.grad(m(a_).sum(), a_)
        return g * deriv.unsqueeze(1), _inflate(eg * Pd + Gx * local + U64 * G * Pd, 4)
    if isinstance(m, Bias):
        return g, eg
    if (f := _factor(lk, P)) is not None:
        e = _inflate(f[0] * eg + f[1] * f[0] * G, 4)
        if isinstance(m, Scale):
            return g * (m.scale * P.get(m, "weight")[0]), e
        assert isinstance(m, ops.Binary) and lk.const is not None
        return (g * lk.const if m.kind == "mul" else g / lk.const), e
    if isinstance(m, ops.Binary):
        return (-g if m.kind == "sub" and lk.const_first else g), eg
    if isinstance(m, POOL_STEPS):
        return sp.pool_backward(m, tuple(h_in.shape), g, eg)
    if isinstance(m, ops.Pad):
        return sp.pad_backward(m, g, eg)
    if isinstance(m, ops.BatchNormFixed):
        return sp.batchnorm_backward(m, g, eg)
    if isinstance(m, ops.LayerNormPlain):
        return layernorm_backward(m, h_in, e_in, g, eg)
    idx = layout_index(m, tuple(h_in.shape))
    assert idx is not None
    shape = tuple(h_in.shape)
    return sp.layout_backward(idx, shape, g), sp.layout_backward(idx, shape, eg)


def _accumulated(parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """The sum of c computed values (a merge, or the cotangents of a value read by c links,
    which autograd adds in some order): e = sum e_j + gamma_c sum (|v_j| + 2 e_j)."""
    if len(parts) == 1:
        return parts[0]
    c = len(parts)
    g = sum((p[0] for p in parts[1:]), parts[0][0])
    rnd = sum((p[0].abs() + 2.0 * p[1] for p in parts[1:]), parts[0][0].abs() + 2.0 * parts[0][1])
    e = sum((p[1] for p in parts[1:]), parts[0][1])
    return g, _inflate(e + gamma(c) * rnd, c)


def _backward_chain(
    chain: Chain, env: Env, P: _Params, g: Tensor, acc: tuple[_SumOfSquares, _SumOfSquares]
) -> None:
    """Cotangents from the output back through every link (reverse order); a value read by
    several links gets the sum of their cotangents."""
    cot: dict[str, list[tuple[Tensor, Tensor]]] = {chain.output: [(g, torch.zeros_like(g))]}
    for lk in reversed(chain.links):
        parts = cot.pop(lk.out, None)
        if not parts:
            continue  # the output does not depend on this value
        g_out, eg_out = _accumulated(parts)
        if lk.merge == "concat":
            for i, part in zip(lk.ins, _split(lk, env, g_out, eg_out), strict=True):
                cot.setdefault(i, []).append(part)
            continue
        if lk.merge is not None:  # the cotangent passes to both inputs exactly (negated for sub)
            cot.setdefault(lk.ins[0], []).append((g_out, eg_out))
            g_b = g_out if lk.merge == "add" else -g_out
            cot.setdefault(lk.ins[1], []).append((g_b, eg_out))
            continue
        tr = _Trace(lk, *env[lk.ins[0]])
        cot.setdefault(lk.ins[0], []).append(_backward(tr, P, g_out, eg_out, acc))


def evaluation_error_bound(
    model: Model, X: Tensor, *, params: Tensor | None = None
) -> EvaluationError | None:
    """E_J >= ||J_computed - J_exact||_F and E_F >= ||F_computed - F_exact||_2 at w (module
    docstring for the formulas); None when the model is not a chain this module covers."""
    chain, _ = chain_links(model)
    if chain is None:
        return None
    P = _Params(model, resolve_params(model, params, device=X.device))
    x = X.reshape(X.shape[0], *model.input_shape).to(torch.float64)
    with torch.no_grad():
        env = _forward_chain(chain, P, x)
        h, e = env[chain.output]
        output = float(e.norm()) * (1.0 + gamma(e.numel() + 2))
        # backward, one cotangent per output c: g has shape (n, k, *output shape)
        n, k = h.shape[0], math.prod(h.shape[1:])
        g = torch.eye(k, dtype=h.dtype, device=h.device).expand(n, k, k).reshape(n, k, *h.shape[1:])
        acc, absq = _SumOfSquares(h), _SumOfSquares(h)
        _backward_chain(chain, env, P, g.clone(), (acc, absq))
    jac = sqrt_up(float(acc.total) * (1.0 + gamma(acc.terms + 2)))
    abs_trace = _up(float(absq.total) * (1.0 + gamma(absq.terms + 2)))
    return EvaluationError(jacobian_fro=_up(jac), output=_up(output), abs_gram_trace=abs_trace)


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
