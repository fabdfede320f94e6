"""Running-error steps of the image links of a chain (docs/theory.md, section 15).

Part of :mod:`plcore.estimate.rounding`, same notation: e_v >= |v_comp - v_exact| and
V = |v_mine| + 2 e_v >= |v_comp| entrywise; forward values have shape (n, ...), cotangents
(n, k, ...) (one per output c); gamma_j = j u / (1 - j u) (Higham 2002, Lemma 3.1 and eq. (3.5):
a sum of j products, any order, with or without FMA, errs by at most gamma_j times the sum of
their absolute values; a sum with exact zero terms rounds only where non-zero terms meet).

**Conv2d** y = s conv(h, W) + t b, q = (C_in / groups) kh kw taps per output (zero padding is
exact). The computed convolution is assumed to form each output as a dot product of its q taps
(im2col / direct kernels: torch's float64 kernels; FFT or Winograd algorithms are not covered):

    e_y = |s| conv(e_h, |W|) + gamma_{q+4} (|s| conv(H, |W|) + |t| |b|).

Backwards g_in = s conv^T(g, W): every input entry is reached by at most
n_out = (C_out / groups) kh kw (output channel, tap) pairs (one output position per tap), so

    e_{g_in} = |s| conv^T(e_g, |W|) + gamma_{n_out+4} |s| conv^T(G, |W|).

Jacobian blocks, per sample i and output c: the weight column (o, c', a, b) is
s sum_p g_{o,p} x_{c', p + tap(a, b)}, a sum over the P = H_out W_out output positions, i.e.
s sum_p g_p (x) patch_p(x) per group. Its error is entrywise at most
|s| sum_p (e_g,p (x) patch_p(H) + |g_exact,p| (x) patch_p(e_h)) + gamma_{P+2} |s| sum_p G_p (x)
patch_p(H) (P products summed, one product by s), and ||sum_p u_p (x) v_p||_F <=
sum_p ||u_p|| ||v_p|| for u_p, v_p >= 0, so per group

    ||dJ_W||_F <= |s| sum_p (||e_g,p|| ||patch_p(H)|| + ||G^x_p|| ||patch_p(e_h)||
                             + gamma_{P+2} ||G_p|| ||patch_p(H)||)

(norms over the group's channels; G^x = |g| + e_g >= |g_exact|). The bias column o is
t sum_p g_{o,p}: error <= |t| (sum_p e_g,op + gamma_{P+2} sum_p G_op).

**Averaging steps** (nn.AvgPool2d, ONNX AveragePool with either divisor, GlobalAveragePool and
ReduceMean over non-batch axes, the JSON GlobalAvgPool): y = A x with A >= 0, each output the
sum of at most q inputs divided by an integer count (ONNX exclude-pad: pool(pad(x)) /
pool(pad(1)), the count itself rounded once). The computed y has relative error gamma_{q+5},
and each input's cotangent sums at most q terms (one division or two per term): gamma_{q+6}.
With A applied in float64 to non-negative bounds:

    e_y = A e_h + gamma_{q+5} A H,      e_{g_in} = A^T e_g + gamma_{q+6} A^T G.

**Pad** (constant value c): new entries are exactly c; e_y = pad(e_h, 0); the cotangent is
cropped (no arithmetic). **BatchNormFixed** y = (x - mean) / sqrt(var + eps) with stored
constants: the computed denominator is sqrt(var + eps) (1 + theta), |theta| <= gamma_2, so
y_comp = (x_comp - mean) / sqrt(var + eps) (1 + theta'), |theta'| <= gamma_5, and with
v = 1/sqrt(var + eps) (evaluated, enlarged by 1 + gamma_4 to be an upper bound):
e_y = v e_h + gamma_5 v (H + |mean|), e_{g_in} = v e_g + gamma_4 v G.

**Layout steps** move entries (a sample-preserving permutation found on an index probe,
:func:`plcore.estimate.rounding_chain.layout_index`): values and bounds move alike, exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn
from torch.nn.grad import conv2d_input

from plcore.estimate.psd import gamma
from plcore.models import onnx_ops as ops
from plcore.models.layers import Conv2d
from plcore.models.spec_build import GlobalAvgPool


def inflate(x: Tensor, n: int) -> Tensor:
    """x (1 + gamma_{n+8}): covers the rounding of the bound's own evaluation."""
    return x * (1.0 + gamma(n + 8))


def _fold(g: Tensor) -> Tensor:
    """(n, k, ...) -> (n k, ...)."""
    return g.reshape(g.shape[0] * g.shape[1], *g.shape[2:])


def _unfold(g: Tensor, n: int) -> Tensor:
    return g.reshape(n, -1, *g.shape[1:])


# ----- Conv2d ------------------------------------------------------------------------------
def _conv(m: Conv2d, x: Tensor, W: Tensor) -> Tensor:
    return Fn.conv2d(x, W, None, m.stride, m.padding, m.dilation, m.groups)


def conv_taps(W: Tensor) -> int:
    """q = (C_in / groups) kh kw, the length of each output's dot product."""
    return int(W.shape[1] * W.shape[2] * W.shape[3])


def conv_forward(
    m: Conv2d, W: Tensor, b: Tensor | None, h: Tensor, e: Tensor
) -> tuple[Tensor, Tensor]:
    """(computed y, e_y) of y = s conv(h, W) + t b (module docstring)."""
    Wa, s = W.abs(), abs(m.weight_scale)
    H = h.abs() + 2.0 * e
    y = m.weight_scale * _conv(m, h, W)
    rnd = s * _conv(m, H, Wa)
    if b is not None:
        y = y + m.bias_scale * b.reshape(1, -1, 1, 1)
        rnd = rnd + abs(m.bias_scale) * b.abs().reshape(1, -1, 1, 1)
    q = conv_taps(W)
    return y, inflate(s * _conv(m, e, Wa) + gamma(q + 4) * rnd, q)


def conv_backward(
    m: Conv2d, W: Tensor, in_shape: tuple[int, ...], g: Tensor, eg: Tensor
) -> tuple[Tensor, Tensor]:
    """(g_in, e_{g_in}) for cotangents g (n, k, C_out, H_out, W_out)."""
    n, k = g.shape[:2]
    size = (n * k, *in_shape[1:])

    def adj(v: Tensor, w: Tensor) -> Tensor:
        out = conv2d_input(size, w, _fold(v), m.stride, m.padding, m.dilation, m.groups)
        return _unfold(out, n)

    Wa, s = W.abs(), abs(m.weight_scale)
    G = g.abs() + 2.0 * eg
    n_out = int(W.shape[0] // m.groups * W.shape[2] * W.shape[3])
    e_in = inflate(s * adj(eg, Wa) + gamma(n_out + 4) * s * adj(G, Wa), n_out)
    return m.weight_scale * adj(g, W), e_in


def _patch_norms(m: Conv2d, W: Tensor, x: Tensor) -> Tensor:
    """||patch_p(x)|| per sample, group and output position: (n, groups, P)."""
    u = Fn.unfold(x, tuple(W.shape[2:]), m.dilation, m.padding, m.stride)
    return u.reshape(x.shape[0], m.groups, -1, u.shape[-1]).norm(dim=2)


def _channel_norms(m: Conv2d, g: Tensor) -> Tensor:
    """||g_p|| over each group's output channels: (n, k, groups, P)."""
    n, k, c_out = g.shape[:3]
    return g.reshape(n, k, m.groups, c_out // m.groups, -1).norm(dim=3)


def conv_weight_block(
    m: Conv2d, W: Tensor, h: Tensor, e_h: Tensor, g: Tensor, eg: Tensor
) -> tuple[Tensor, Tensor]:
    """Per row (sample, output): the bound of ||dJ_W||_F (module docstring) and the bound
    |s| (sum_p ||G_p|| ||patch_p(H)||) of || |s| sum_p |g_p| (x) |patch_p(h)| ||_F: (n, k) each."""
    s = abs(m.weight_scale)
    G, Gx = g.abs() + 2.0 * eg, g.abs() + eg
    Hn = _patch_norms(m, W, h.abs() + 2.0 * e_h).unsqueeze(1)
    En = _patch_norms(m, W, e_h).unsqueeze(1)
    P = Hn.shape[-1]
    absolute = s * (_channel_norms(m, G) * Hn).sum(dim=-1)  # (n, k, groups)
    per_p = _channel_norms(m, eg) * Hn + _channel_norms(m, Gx) * En
    err = s * per_p.sum(dim=-1) + gamma(P + 2) * absolute
    return inflate(err.norm(dim=-1), P), inflate(absolute.norm(dim=-1), P)


def conv_bias_block(m: Conv2d, g: Tensor, eg: Tensor) -> tuple[Tensor, Tensor]:
    """Per row: the bound of ||dJ_b||, |t| || sum_p e_g + gamma_{P+2} sum_p G ||, and
    |t| || sum_p G || >= || |t| sum_p |g_p| ||: (n, k) each."""
    G = g.abs() + 2.0 * eg
    P = math.prod(g.shape[3:])
    t = abs(m.bias_scale)
    absolute = t * G.sum(dim=(3, 4))
    err = t * eg.sum(dim=(3, 4)) + gamma(P + 2) * absolute
    return inflate(err.norm(dim=-1), P), inflate(absolute.norm(dim=-1), P)


# ----- averaging steps ---------------------------------------------------------------------
def pool_terms(m: nn.Module, in_shape: tuple[int, ...]) -> int:
    """q, the most inputs one output of an averaging step sums."""
    if isinstance(m, ops.GlobalPool | GlobalAvgPool):
        return math.prod(in_shape[2:])
    if isinstance(m, ops.Reduce):
        assert m.axes is not None
        return math.prod(in_shape[a % len(in_shape)] for a in m.axes)
    if isinstance(m, ops.AvgPool2d):
        return m.kernel[0] * m.kernel[1]
    assert isinstance(m, nn.AvgPool2d)
    k = m.kernel_size
    return k * k if isinstance(k, int) else int(k[0] * k[1])


def pool_forward(m: nn.Module, h: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
    q = pool_terms(m, tuple(h.shape))
    H = h.abs() + 2.0 * e
    return m(h), inflate(m(e) + gamma(q + 5) * m(H), q)


def _adjoint(m: nn.Module, in_shape: tuple[int, ...], v: Tensor) -> Tensor:
    """A^T v for the linear step m, cotangents v (n, k, ...) -> (n, k, *in_shape[1:])."""
    n, k = v.shape[:2]
    x0 = torch.zeros((n * k, *in_shape[1:]), dtype=v.dtype, device=v.device, requires_grad=True)
    with torch.enable_grad():
        (out,) = torch.autograd.grad(m(x0), x0, _fold(v))
    return _unfold(out, n)


def pool_backward(
    m: nn.Module, in_shape: tuple[int, ...], g: Tensor, eg: Tensor
) -> tuple[Tensor, Tensor]:
    q = pool_terms(m, in_shape)
    G = g.abs() + 2.0 * eg
    e_in = inflate(_adjoint(m, in_shape, eg) + gamma(q + 6) * _adjoint(m, in_shape, G), q)
    return _adjoint(m, in_shape, g), e_in


# ----- Pad, BatchNormFixed -----------------------------------------------------------------
def pad_backward(m: ops.Pad, g: Tensor, eg: Tensor) -> tuple[Tensor, Tensor]:
    """The adjoint of padding is cropping (negated pads), exact."""
    neg = tuple(-p for p in m.pads)
    return Fn.pad(g, neg), Fn.pad(eg, neg)


def _inv_std_upper(m: ops.BatchNormFixed) -> Tensor:
    return (1.0 / torch.sqrt(m.running_var + m.eps)) * (1.0 + gamma(4))


def batchnorm_forward(m: ops.BatchNormFixed, h: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
    v = _inv_std_upper(m)
    H = h.abs() + 2.0 * e
    return m(h), inflate(v * e + gamma(5) * v * (H + m.running_mean.abs()), 4)


def batchnorm_backward(m: ops.BatchNormFixed, g: Tensor, eg: Tensor) -> tuple[Tensor, Tensor]:
    v = _inv_std_upper(m)
    G = g.abs() + 2.0 * eg
    return g / torch.sqrt(m.running_var + m.eps), inflate(v * eg + gamma(4) * v * G, 4)


# ----- layout steps ------------------------------------------------------------------------
def layout_forward(idx: Tensor, out_shape: tuple[int, ...], v: Tensor) -> Tensor:
    return v.reshape(-1)[idx].reshape(out_shape)


def layout_backward(idx: Tensor, in_shape: tuple[int, ...], v: Tensor) -> Tensor:
    """The inverse permutation applied to cotangents v (n, k, *out) -> (n, k, *in)."""
    k = v.shape[1]
    flat = v.transpose(0, 1).reshape(k, -1)
    out = flat.new_zeros(k, math.prod(in_shape))
    out[:, idx] = flat
    return out.reshape(k, *in_shape).transpose(0, 1)
