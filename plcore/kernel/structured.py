r"""The structured tangent kernel: K = J J^T from layer inputs and output gradients, never J.

K(w) = J J^T = sum over parameter tensors theta of J_theta J_theta^T, where J_theta holds the
columns of J that belong to theta. For every parameterized layer of :mod:`plcore.models.layers`
the row (i, c) of J_theta has a closed form in two quantities of sample i:

* a_i, the layer's input (recorded by a forward hook), and
* g_ic = d f_c(w; x_i) / d y_i, the derivative of output c with respect to the layer's output
  y_i. One backward pass with cotangent e_c on every sample gives g_ic for all i at once,
  because samples do not interact (eval mode): k backward passes in total.

Dense, y_p = s_w W a_p + s_b b on the last axis, p running over extra (token) axes P:
  d f_c / d W = s_w sum_p g_cp a_p^T  and  d f_c / d b = s_b sum_p g_cp, so

  K_W[(i,c),(j,c')] = s_w^2 sum_{p,q} (a_ip . a_jq)(g_icp . g_jc'q),
  K_b[(i,c),(j,c')] = s_b^2 (sum_p g_icp) . (sum_q g_jc'q).

For P = 1 the first line is the Hadamard product s_w^2 (A A^T (x) 1_{k x k}) o (G G^T),
O(N^2 (d_in + d_out)) work, which is what makes wide MLPs cheap. For P > 1 the cheaper of
the double sum over (p, q) and the explicit per-row gradient s_w sum_p g_cp a_p^T
(d_out x d_in per row, Gram product chunked within the memory budget) is used.

Conv2d: unfold (im2col) turns y = s_w conv2d(x, W) into a Dense layer whose inputs a_p are the
C_in * kh * kw patches at the P = H_out * W_out output positions; each group is its own Dense
layer (weight rows of group g only see the input channels of group g).

Bias (y = x + s b) and Scale (y = x * (s g)), b and g broadcast against x: the per-sample
gradient is formed explicitly, s * sum over broadcast axes of g_ic (Bias) or of g_ic * x_i
(Scale), and K += R R^T.

A layer called several times contributes the sum over calls, i.e. the positions p of all calls
concatenated. A parameter shared between two layers is refused (see ``structured_obstacle``).

Cost: one forward, k backwards, and the Gram products; memory O(N * sum of layer output sizes)
for the g's plus the Gram temporaries. Derivation and the Hadamard trick: the row of J for a
dense weight is s_w sum_p g_p (outer) a_p, whose inner products factor as above (the same
identity that neural-tangents' structured-derivatives implementation exploits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn

from plcore.errors import OptionsError
from plcore.kernel._blocks import accumulate_gram, samples_per_chunk
from plcore.kernel._checks import check_inputs, resolve_params
from plcore.kernel.methods import structured_obstacle
from plcore.models.base import Model
from plcore.models.layers import PARAMETERIZED_LAYERS, Bias, Conv2d, Dense, Scale


@dataclass
class _Calls:
    """What one parameterized layer saw: inputs and outputs of each call, in call order."""

    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    grads: list[Tensor] = field(default_factory=list)  # (n, k, *y.shape[1:]) per call


def _record(model: Model, X: Tensor, w: Tensor) -> tuple[dict[nn.Module, _Calls], Tensor]:
    """Forward at w with hooks on every parameterized layer; returns the calls and f (n, k)."""
    calls: dict[nn.Module, _Calls] = {}

    def hook(mod: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
        rec = calls.setdefault(mod, _Calls())
        rec.inputs.append(inputs[0].detach())
        rec.outputs.append(output)

    handles = [
        mod.register_forward_hook(hook)
        for mod in model.module.modules()
        if type(mod) in PARAMETERIZED_LAYERS and any(p.requires_grad for p in mod.parameters())
    ]
    try:
        w_leaf = w.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model.apply(model.unflatten(w_leaf), X)
    finally:
        for h in handles:
            h.remove()
    return calls, out


def _backward(calls: dict[nn.Module, _Calls], out: Tensor) -> None:
    """g_ic = d f_c / d y_i for every recorded output y, one backward per output c."""
    k = out.shape[1]
    records = [(rec, t) for rec in calls.values() for t in range(len(rec.outputs))]
    ys = [rec.outputs[t] for rec, t in records]
    per_c: list[tuple[Tensor | None, ...]] = []
    with torch.enable_grad():  # the caller may run under no_grad
        for c in range(k):
            per_c.append(
                torch.autograd.grad(out[:, c].sum(), ys, retain_graph=c < k - 1, allow_unused=True)
            )
    for idx, (rec, t) in enumerate(records):
        y = rec.outputs[t]
        gs = [g[idx] if g[idx] is not None else torch.zeros_like(y) for g in per_c]
        rec.grads.append(torch.stack([g.detach() for g in gs], dim=1))  # type: ignore[union-attr]
    for rec in calls.values():
        rec.outputs.clear()


def _require_batch(name: str, t: Tensor, n: int) -> None:
    if t.ndim < 1 or t.shape[0] != n:
        raise OptionsError(
            f"the structured kernel method needs the sample axis first at every layer, but "
            f"{name} sees a tensor of shape {tuple(t.shape)} for n = {n} samples"
        )


DenseStrategy = Literal["hadamard", "pairs", "rows"]

_PAIR_BYTES = 256 * 2**20


def dense_strategy(n: int, k: int, P: int, d_in: int, d_out: int) -> DenseStrategy:
    """How a Dense-like layer's K_W is contracted, from the operation counts.

    ``"hadamard"`` (P = 1): (A A^T) o (G G^T), O(n^2 d_in + N^2 d_out).
    ``"pairs"``: the double sum over positions, O(n^2 P^2 d_in + N^2 P^2 (d_out + 1)), with
    N^2 P temporaries (used when cheaper and the temporaries fit 256 MiB).
    ``"rows"``: explicit per-row gradients (d_out x d_in each), O(N P d_in d_out + N^2 d_in d_out),
    chunked within the memory budget.
    """
    if P == 1:
        return "hadamard"
    N = n * k
    cost_pairs = n * n * P * P * d_in + N * N * P * P * (d_out + 1)
    cost_rows = N * P * d_in * d_out + N * N * d_in * d_out
    if cost_pairs <= cost_rows and 3 * N * N * P * 8 <= _PAIR_BYTES:
        return "pairs"
    return "rows"


def _dense_like(K: Tensor, a: Tensor, g: Tensor, scale: float, chunk_size: int | None) -> None:
    """K += scale^2 sum_{p,q} (a_ip . a_jq)(g_icp . g_jc'q), a (n, P, d_in), g (n, k, P, d_out)."""
    n, P, d_in = a.shape
    k, d_out = g.shape[1], g.shape[3]
    N = n * k
    s2 = scale * scale
    strategy = dense_strategy(n, k, P, d_in, d_out)
    if strategy == "hadamard":
        A = a[:, 0] @ a[:, 0].T
        Gf = g.reshape(N, d_out)
        K += s2 * A.repeat_interleave(k, 0).repeat_interleave(k, 1) * (Gf @ Gf.T)
        return
    if strategy == "pairs":
        Gf = g.reshape(N, P, d_out)
        for p in range(P):
            Ap = torch.einsum("id,jqd->ijq", a[:, p], a)
            Gp = torch.einsum("re,sqe->rsq", Gf[:, p], Gf)
            Ap = Ap.repeat_interleave(k, 0).repeat_interleave(k, 1)
            K += s2 * (Ap * Gp).sum(-1)
        return

    def rows(start: int, stop: int) -> Tensor:
        R = torch.einsum("ncpo,npi->ncoi", g[start:stop], a[start:stop])
        return scale * R.reshape((stop - start) * k, d_out * d_in)

    chunk = samples_per_chunk(n, 2 * k, d_out * d_in, chunk_size)
    accumulate_gram(K, rows, n, k, chunk)


def _explicit(K: Tensor, R: Tensor) -> None:
    """K += R R^T for small explicit per-row gradients R (N, size)."""
    B = R @ R.T
    K += 0.5 * (B + B.T)


def _dense(K: Tensor, mod: Dense, rec: _Calls, n: int, k: int, chunk: int | None) -> None:
    a = torch.cat([x.reshape(n, -1, mod.in_features) for x in rec.inputs], dim=1)
    g = torch.cat([gy.reshape(n, k, -1, mod.out_features) for gy in rec.grads], dim=2)
    if mod.weight.requires_grad:
        _dense_like(K, a, g, mod.weight_scale, chunk)
    if mod.bias is not None and mod.bias.requires_grad:
        _explicit(K, mod.bias_scale * g.sum(2).reshape(n * k, -1))


def _conv(K: Tensor, mod: Conv2d, rec: _Calls, n: int, k: int, chunk: int | None) -> None:
    c_out, c_in_g, kh, kw = mod.weight.shape
    G = mod.groups
    cols, gys = [], []
    for x, gy in zip(rec.inputs, rec.grads, strict=True):
        u = Fn.unfold(x, (kh, kw), dilation=mod.dilation, padding=mod.padding, stride=mod.stride)
        cols.append(u.transpose(1, 2).reshape(n, -1, G, c_in_g * kh * kw))
        gys.append(gy.reshape(n, k, c_out, -1).transpose(2, 3).reshape(n, k, -1, G, c_out // G))
    a = torch.cat(cols, dim=1)
    g = torch.cat(gys, dim=2)
    if mod.weight.requires_grad:
        for grp in range(G):
            _dense_like(K, a[:, :, grp], g[:, :, :, grp], mod.weight_scale, chunk)
    if mod.bias is not None and mod.bias.requires_grad:
        _explicit(K, mod.bias_scale * g.sum(2).reshape(n * k, c_out))


def _reduce_to(name: str, gy: Tensor, param: Tensor, n: int, k: int) -> Tensor:
    """Per-row sum of gy (n, k, *y.shape[1:]) over the axes that ``param`` is broadcast along."""
    y_tail = tuple(gy.shape[2:])
    shape = tuple(param.shape)
    if len(shape) == len(y_tail) + 1:
        if shape[0] != 1:
            raise OptionsError(
                f"{name} has a parameter of shape {shape} with a sample axis of size {shape[0]}; "
                "the structured kernel method needs parameters shared by all samples"
            )
        shape = shape[1:]
    if len(shape) > len(y_tail):
        raise OptionsError(f"{name}: parameter shape {tuple(param.shape)} vs output {y_tail}")
    target = (n * k,) + (1,) * (len(y_tail) - len(shape)) + shape
    return gy.reshape(n * k, *y_tail).sum_to_size(target).reshape(n * k, -1)


def _bias_or_scale(K: Tensor, name: str, mod: Bias | Scale, rec: _Calls, n: int, k: int) -> None:
    param = mod.bias if isinstance(mod, Bias) else mod.weight
    if not param.requires_grad:
        return
    R: Tensor | None = None
    for x, gy in zip(rec.inputs, rec.grads, strict=True):
        if isinstance(mod, Scale):
            _require_batch(name, x, n)
            if x.ndim != gy.ndim - 1:
                raise OptionsError(
                    f"{name}: input of shape {tuple(x.shape)} is broadcast to an output of "
                    f"shape {(n, *gy.shape[2:])}; the structured method needs equal ranks"
                )
            gy = gy * x.unsqueeze(1)
        part = mod.scale * _reduce_to(name, gy, param, n, k)
        R = part if R is None else R + part
    if R is not None:
        _explicit(K, R)


def structured_kernel(
    model: Model, X: Tensor, *, params: Tensor | None = None, chunk_size: int | None = None
) -> Tensor:
    """K(w) = J(w) J(w)^T from layer inputs and output gradients (module docstring).

    Args:
        model: a model whose trainable parameters all belong to Dense / Conv2d / Bias / Scale
            layers; samples must not interact (eval mode).
        X: inputs (n, *model.input_shape), float64.
        params: flat w to evaluate at (None: the model's own w0). The parameters are passed
            functionally (``torch.func.functional_call``); the module is never modified.
        chunk_size: samples per block where explicit per-sample gradients are contracted;
            None picks it from a 256 MiB budget.

    Returns:
        K, (N, N) float64, N = n * k, row i*k + c = output c of sample i.

    Raises:
        OptionsError: the model has a parameter the method does not support, or a layer that
            does not see the sample axis first.
    """
    check_inputs(model, X)
    w = resolve_params(model, params)
    obstacle = structured_obstacle(model)
    if obstacle is not None:
        raise OptionsError(f"the structured kernel method cannot run on this model: {obstacle}")
    n, k = X.shape[0], model.output_dim
    calls, out = _record(model, X, w)
    if tuple(out.shape) != (n, k):
        raise OptionsError(f"the model returned shape {tuple(out.shape)}, expected ({n}, {k})")
    names = {mod: name for name, mod in model.module.named_modules()}
    for mod, rec in calls.items():
        for x, y in zip(rec.inputs, rec.outputs, strict=True):
            _require_batch(f"layer {names.get(mod, '?')!r} input", x, n)
            _require_batch(f"layer {names.get(mod, '?')!r} output", y, n)
    _backward(calls, out)
    K = X.new_zeros(n * k, n * k)
    for mod, rec in calls.items():
        name = f"layer {names.get(mod, '?')!r}"
        if isinstance(mod, Dense):
            _dense(K, mod, rec, n, k, chunk_size)
        elif isinstance(mod, Conv2d):
            _conv(K, mod, rec, n, k, chunk_size)
        elif isinstance(mod, Bias | Scale):
            _bias_or_scale(K, name, mod, rec, n, k)
    return K
