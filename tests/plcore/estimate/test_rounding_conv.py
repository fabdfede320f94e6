"""The running-error bounds E_J and E_F of image chains against 50-digit recomputations.

The references are written here from the nets' definitions (direct loops for convolution,
pooling and normalisation in mpmath), independently of the bound's code: F in 50 digits, and J
by the complex step (d f / d w_j = Im f(w + i h e_j) / h + O(h^2), h = 1e-30, no cancellation),
so both are exact far below the float64 errors they measure. The nets are tiny (1 x 5 x 5
inputs, 2 samples, 2 outputs) because the mpmath loops are slow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mpmath
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plcore import load_model
from plcore.estimate.psd import gamma
from plcore.estimate.rounding import evaluation_bound_refusal, evaluation_error_bound
from plcore.estimate.spectral import (
    _absolute_accumulation,
    certified_spectrum,
    kernel_accumulation_length,
)
from plcore.kernel import tangent_kernel
from plcore.models import onnx_ops as ops
from plcore.models.base import Model
from plcore.models.onnx_import import load_onnx_model
from plcore.models.params import select_parameters
from tests.plcore.models.torch_oracles import export

mpmath.mp.dps = 50
MP = mpmath.mpf
U = 2.0**-53
STEP = MP(10) ** -30
Num = Any  # mpf or mpc
Img = list[list[list[Num]]]
Op = tuple[Any, ...]
Params = dict[str, Any]  # name -> nested lists of mp numbers


def _nest(t: Tensor) -> Any:
    if t.ndim == 0:
        return MP(float(t))
    return [_nest(s) for s in t]


def _conv(x: Img, W: Any, b: Any, s: float, t: float, op: Op) -> Img:
    _, stride, pad, dil, groups = op[:5]
    c_out, c_in_g, kh, kw = len(W), len(W[0]), len(W[0][0]), len(W[0][0][0])
    H, Wd = len(x[0]), len(x[0][0])
    Ho = (H + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    Wo = (Wd + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    out: Img = []
    for o in range(c_out):
        grp = o // (c_out // groups)
        plane = []
        for i in range(Ho):
            row = []
            for j in range(Wo):
                acc: Num = MP(0)
                for c in range(c_in_g):
                    for a in range(kh):
                        u = i * stride - pad + a * dil
                        for bb in range(kw):
                            v = j * stride - pad + bb * dil
                            if 0 <= u < H and 0 <= v < Wd:
                                acc += W[o][c][a][bb] * x[grp * c_in_g + c][u][v]
                row.append(MP(s) * acc + (MP(t) * b[o] if b is not None else 0))
            plane.append(row)
        out.append(plane)
    return out


def _avgpool(x: Img, k: int, stride: int, pad: int, include_pad: bool) -> Img:
    H, Wd = len(x[0]), len(x[0][0])
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (Wd + 2 * pad - k) // stride + 1
    out: Img = []
    for plane in x:
        rows = []
        for i in range(Ho):
            row = []
            for j in range(Wo):
                cells = [
                    plane[u][v]
                    for u in range(i * stride - pad, i * stride - pad + k)
                    for v in range(j * stride - pad, j * stride - pad + k)
                    if 0 <= u < H and 0 <= v < Wd
                ]
                row.append(mpmath.fsum(cells) / (k * k if include_pad else len(cells)))
            rows.append(row)
        out.append(rows)
    return out


def _map(f: Any, x: Any) -> Any:
    return [_map(f, v) for v in x] if isinstance(x, list) else f(x)


def _flat(x: Any) -> list[Num]:
    return [w for v in x for w in _flat(v)] if isinstance(x, list) else [x]


def _layernorm(x: Any, g: Any, b: Any, eps: Num, last: bool) -> Any:
    """(x - mean) / sqrt(var + eps) * g + b over the whole sample, or over each last-axis row."""
    if last and isinstance(x[0], list):
        return [_layernorm(v, g, b, eps, last) for v in x]
    v = _flat(x)
    m = mpmath.fsum(v) / len(v)
    s = mpmath.sqrt(mpmath.fsum((t - m) ** 2 for t in v) / len(v) + eps)
    gs = _flat(g) if g is not None else [MP(1)] * len(v)
    bs = _flat(b) if b is not None else [MP(0)] * len(v)
    it = iter((t - m) / s * gi + bi for t, gi, bi in zip(v, gs, bs, strict=True))
    return _map(lambda _: next(it), x)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, list):
        return [_add(u, v) for u, v in zip(a, b, strict=True)]
    return a + b


def _join(a: Any, b: Any, depth: int) -> Any:
    """Concatenation of two nested lists at nesting ``depth`` (0: the first per-sample axis)."""
    if depth == 0:
        return list(a) + list(b)
    return [_join(u, v, depth - 1) for u, v in zip(a, b, strict=True)]


def _run(ops: Sequence[Op], p: Params, x: Any) -> list[Num]:
    """The net of ``ops`` on one sample, in mp arithmetic (the test's own interpreter)."""
    for op in ops:
        kind = op[0]
        if kind == "conv":  # ("conv", stride, pad, dil, groups, name, s, t)
            name, s, t = op[5:]
            x = _conv(x, p[f"{name}.weight"], p.get(f"{name}.bias"), s, t, op)
        elif kind == "tanh":
            x = _map(mpmath.tanh, x)
        elif kind == "ln":  # ("ln", gamma name, beta name (None: no affine part), eps, last axis)
            _, gname, bname, eps, last = op
            x = _layernorm(x, p.get(gname), p.get(bname), MP(eps), last)
        elif kind == "avgpool":  # ("avgpool", k, stride, pad, include_pad)
            x = _avgpool(x, *op[1:])
        elif kind == "gap":
            x = [[mpmath.fsum(v for r in pl for v in r) / (len(pl) * len(pl[0]))] for pl in x]
            x = [[row] for row in x]
        elif kind == "bn":  # ("bn", name, mean, var, eps): (x - mean)/sqrt(var + eps) g + b
            _, name, mean, var, eps = op
            g, b = p[f"{name}.weight"], p[f"{name}.bias"]
            x = [
                [[(v - mean[c]) / mpmath.sqrt(var[c] + eps) * g[c] + b[c] for v in r] for r in pl]
                for c, pl in enumerate(x)
            ]
        elif kind == "residual":  # ("residual", ops of the block)
            x = _add(x, _run(op[1], p, x))
        elif kind == "sum":  # ("sum", ops of one branch, ops of the other): both read x
            x = _add(_run(op[1], p, x), _run(op[2], p, x))
        elif kind == "diff":  # ("diff", ops of one branch, ops of the other): first - second
            x = _add(_run(op[1], p, x), _map(lambda v: -v, _run(op[2], p, x)))
        elif kind == "cat":  # ("cat", depth, ops of one branch, ops of the other): joined lists
            x = _join(_run(op[2], p, x), _run(op[3], p, x), op[1])
        elif kind == "flatten":
            x = [v for pl in x for r in pl for v in r]
        elif kind == "linear":  # ("linear", name, s, t)
            _, name, s, t = op
            W, b = p[f"{name}.weight"], p[f"{name}.bias"]
            x = [
                MP(s) * mpmath.fsum(w * v for w, v in zip(row, x, strict=True)) + MP(t) * bi
                for row, bi in zip(W, b, strict=True)
            ]
        else:
            raise AssertionError(kind)
    return x


def _exact(
    ops: Sequence[Op], values: dict[str, Tensor], order: list[str], X: Tensor
) -> tuple[list[Num], list[list[Num]]]:
    """F (sample-major) and J (columns: the parameters ``order``, row-major) in 50 digits."""
    p0 = {name: _nest(v) for name, v in values.items()}
    F_flat: list[Num] = []
    cols: list[list[Num]] = []
    xs = [_nest(x) for x in X]
    for x in xs:
        F_flat += _run(ops, p0, x)
    for name in order:
        for j in range(values[name].numel()):
            idx = list(torch.unravel_index(torch.tensor(j), values[name].shape))
            col: list[Num] = []
            p = dict(p0)
            p[name] = _nest(values[name])
            cell = p[name]
            for i in idx[:-1]:
                cell = cell[int(i)]
            cell[int(idx[-1])] = mpmath.mpc(cell[int(idx[-1])], STEP)
            for x in xs:
                col += [mpmath.im(v) / STEP for v in _run(ops, p, x)]
            cols.append(col)
    J_rows = [list(r) for r in zip(*cols, strict=True)]
    return F_flat, J_rows


def _check(
    model: Model, X: Tensor, F_mp: list[Num], J_mp: list[list[Num]], *, loose: float = 1e4
) -> tuple:
    """Bound >= true error (F and J, Frobenius), within ``loose`` times max(error, u ||J||);
    returns the ratios."""
    w = model.flat_params()
    F_c = model.apply_flat(w, X).tolist()
    J_c = torch.func.jacrev(lambda v: model.apply_flat(v, X))(w).tolist()
    f_err = float(
        mpmath.sqrt(mpmath.fsum((MP(a) - b) ** 2 for a, b in zip(F_c, F_mp, strict=True)))
    )
    j_err = float(
        mpmath.sqrt(
            mpmath.fsum(
                (MP(a) - b) ** 2
                for ra, rb in zip(J_c, J_mp, strict=True)
                for a, b in zip(ra, rb, strict=True)
            )
        )
    )
    bound = evaluation_error_bound(model, X)
    assert bound is not None, evaluation_bound_refusal(model)
    J_norm = float(torch.tensor(J_c).norm())
    assert 0 < f_err <= bound.output
    assert 0 < j_err <= bound.jacobian_fro
    assert bound.jacobian_fro <= loose * max(j_err, U * J_norm)
    assert bound.output <= loose * max(f_err, U)
    return bound.jacobian_fro / j_err, bound.output / f_err


def _inputs(shape: tuple[int, ...] = (1, 5, 5), n: int = 2) -> Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64) * 1.5


SPEC_A: dict[str, Any] = {
    "type": "layers",
    "input_shape": [1, 5, 5],
    "output_dim": 2,
    "layers": [
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "activation", "name": "tanh"},
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1},
        {"type": "activation", "name": "tanh"},
        {"type": "avgpool2d", "kernel_size": 2, "stride": 1},
        {"type": "flatten"},
        {"type": "linear", "out": 2},
    ],
    "weight_std": 1.5,
    "bias_std": 0.5,
    "seed": 4,
}
SPEC_B: dict[str, Any] = SPEC_A | {
    "layers": [
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "activation", "name": "tanh"},
        {
            "type": "residual",
            "layers": [
                {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
                {"type": "activation", "name": "tanh"},
            ],
        },
        {"type": "global_avgpool"},
        {"type": "linear", "out": 2},
    ]
}


def _spec_ops(model: Model, items: list[dict[str, Any]], prefix: str = "") -> list[Op]:
    """The mp ops of a JSON layer list; scales read from the built layers."""
    ops: list[Op] = []
    mods = dict(model.module.named_modules())
    for i, it in enumerate(items):
        name = f"{prefix}{i}"
        kind = it["type"]
        if kind == "conv2d":
            m = mods[name]
            ops.append(
                ("conv", m.stride[0], m.padding[0], 1, 1, name, m.weight_scale, m.bias_scale)
            )
        elif kind == "activation":
            ops.append(("tanh",))
        elif kind == "avgpool2d":
            ops.append(("avgpool", it["kernel_size"], it.get("stride", it["kernel_size"]), 0, True))
        elif kind == "global_avgpool":
            ops += [("gap",), ("flatten",)]
        elif kind == "flatten":
            ops.append(("flatten",))
        elif kind == "linear":
            m = mods[name]
            ops.append(("linear", name, m.weight_scale, m.bias_scale))
        elif kind == "residual":
            ops.append(("residual", _spec_ops(model, it["layers"], f"{name}.block.")))
        elif kind == "layernorm":
            eps = it.get("eps", 1e-5)
            ops.append(("ln", f"{name}.scale.weight", f"{name}.shift.bias", eps, False))
    return ops


def _source_names(model: Model) -> list[str]:
    sources = model.metadata.get("parameter_sources", {})
    return [sources.get(n, n) for n in model.named_params()]


@pytest.mark.parametrize("spec", [SPEC_A, SPEC_B], ids=["conv-stride-avgpool", "residual-gap"])
def test_json_cnn_bound_covers_the_true_error(spec: dict[str, Any]) -> None:
    model = load_model(spec)
    X = _inputs()
    values = {n: p.detach() for n, p in model.module.named_parameters()}
    F_mp, J_mp = _exact(_spec_ops(model, spec["layers"]), values, list(model.named_params()), X)
    ratio_J, ratio_F = _check(model, X, F_mp, J_mp)
    assert ratio_J >= 1.0 and ratio_F >= 1.0


@pytest.mark.parametrize("spec", [SPEC_A, SPEC_B], ids=["conv-stride-avgpool", "residual-gap"])
def test_json_cnn_and_its_onnx_export_both_get_valid_bounds(spec: dict[str, Any]) -> None:
    # the residual export branches: x feeds the block and the Add(x, block(x)) that ends it
    model = load_model(spec)
    onnx_model = load_onnx_model(export(model.module, (1, 5, 5)))
    assert evaluation_bound_refusal(onnx_model) is None
    X = _inputs()
    values = {n: p.detach() for n, p in model.module.named_parameters()}
    ops = _spec_ops(model, spec["layers"])
    ratio_J, ratio_F = _check(onnx_model, X, *_exact(ops, values, _source_names(onnx_model), X))
    assert ratio_J >= 1.0 and ratio_F >= 1.0
    a, b = evaluation_error_bound(model, X), evaluation_error_bound(onnx_model, X)
    assert a is not None and b is not None
    # different chains (the export multiplies the conv output by its scale as a separate step)
    assert 0.2 < a.jacobian_fro / b.jacobian_fro < 5.0


class _GroupedCNN(nn.Module):
    """conv (dilation 2) tanh, conv (stride 2, groups 2) tanh, avgpool (exclude-pad), batchnorm
    (eval, fixed statistics), global average pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.c1 = nn.Conv2d(1, 2, 3, padding=2, dilation=2)
        self.c2 = nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2)
        self.pool = nn.AvgPool2d(2, stride=2, padding=1, count_include_pad=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.c1.weight.mul_(3.0)
            self.bn.get_buffer("running_mean").uniform_(-0.3, 0.3)
            self.bn.get_buffer("running_var").uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.c2(torch.tanh(self.c1(x))))
        h = self.bn(self.pool(h))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))

    def ops(self, eps: float) -> list[Op]:
        """``eps``: as stored in the ONNX file (a float32 attribute, not the module's 1e-5)."""
        bn = self.bn
        mean, var = bn.get_buffer("running_mean"), bn.get_buffer("running_var")
        stats = (_nest(mean), _nest(var), MP(eps))
        return [
            ("conv", 1, 2, 2, 1, "c1", 1.0, 1.0),
            ("tanh",),
            ("conv", 2, 1, 1, 2, "c2", 1.0, 1.0),
            ("tanh",),
            ("avgpool", 2, 2, 1, False),
            ("bn", "bn", *stats),
            ("gap",),
            ("flatten",),
            ("linear", "fc", 1.0, 1.0),
        ]


def test_onnx_cnn_with_groups_dilation_exclude_pad_and_batchnorm_is_covered() -> None:
    src = _GroupedCNN().double().eval()
    model = load_onnx_model(export(src, (1, 5, 5)))
    assert evaluation_bound_refusal(model) is None
    X = _inputs()
    values = {n: p.detach() for n, p in src.named_parameters()}
    eps = next(m.eps for m in model.module.modules() if isinstance(m, ops.BatchNormFixed))
    assert eps != src.bn.eps and abs(eps - src.bn.eps) < 1e-12
    ratio_J, ratio_F = _check(model, X, *_exact(src.ops(eps), values, _source_names(model), X))
    assert ratio_J >= 1.0 and ratio_F >= 1.0


def test_frozen_conv_features_with_a_trainable_head_are_covered() -> None:
    model = select_parameters(load_model(SPEC_A), frozen=["0.*", "2.*"])
    X = _inputs()
    values = {n: p.detach() for n, p in model.module.named_parameters()}
    _check(
        model, X, *_exact(_spec_ops(model, SPEC_A["layers"]), values, list(model.named_params()), X)
    )


def test_image_models_outside_the_chain_are_refused_with_a_reason() -> None:
    spec = dict(SPEC_A)
    spec["layers"] = [dict(it) for it in SPEC_A["layers"]]
    spec["layers"][1] = {"type": "activation", "name": "relu"}
    assert "'relu' has no running-error bound" in (evaluation_bound_refusal(load_model(spec)) or "")

    class MaxPoolNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2, 1)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(F.max_pool2d(torch.tanh(self.conv(x)), 3).flatten(1))

    maxpool = load_onnx_model(export(MaxPoolNet(), (1, 5, 5)))
    assert "MaxPool2d has no running-error bound" in (evaluation_bound_refusal(maxpool) or "")


def test_gram_rounding_of_conv_kernels_is_bounded_through_absolute_positional_sums() -> None:
    """The structured kernel sums s^2 (a_p . a_q)(g_p . g_q) over pairs of positions; the sums
    may cancel, so the rounding is bounded by gamma_M T with T >= sum_i || |J|_i ||^2 >= tr K."""
    model = load_model(SPEC_A)
    X = _inputs()
    ev = evaluation_error_bound(model, X)
    assert ev is not None and ev.abs_gram_trace is not None
    J = torch.func.jacrev(lambda v: model.apply_flat(v, X))(model.flat_params())
    assert ev.abs_gram_trace >= float((J * J).sum())
    K = tangent_kernel(model, X)
    M = kernel_accumulation_length(model)
    assert model.n_params + 25 * 25 <= M  # the first conv: 25 output positions
    M_abs = _absolute_accumulation(M, K, ev)
    tr = float(K.diagonal().sum())
    assert M_abs >= M and gamma(M_abs) * tr >= gamma(M) * ev.abs_gram_trace
    cs = certified_spectrum(K, model, X=X)
    lam = float(torch.linalg.eigvalsh(J @ J.T)[0])
    assert 0 < cs.lambda_min_lower <= lam and f"M = {M_abs}" in cs.method
