"""Graphs with fan-out, merges and joins (parallel branches, a value read three times, projection
shortcuts, Concat of branches or with the input) against 50-digit recomputations, and what the
graph reader still refuses.

The references are the mp interpreter of ``test_rounding_conv`` (its "sum" op runs two branches on
one value and adds them), F in 50 digits and J by the complex step. The merge and the cotangent
sum are also checked in exact rationals with the input errors at their bounds.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plcore.estimate.analytic import bound_refusal
from plcore.estimate.rounding import (
    _accumulated,
    _join,
    _merge,
    _split,
    evaluation_bound_refusal,
)
from plcore.estimate.rounding_chain import Link, chain_links
from plcore.models import onnx_ops as ops
from plcore.models.onnx_import import load_onnx_model
from plcore.models.params import select_parameters
from tests.plcore.estimate.test_rounding_conv import Op, _check, _exact, _inputs, _source_names
from tests.plcore.models.torch_oracles import export


class _TwoBranches(nn.Module):
    """tanh(c1(x)) + tanh(c2(x)): x feeds two sub-chains, neither of them the identity."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(21)
        self.c1, self.c2 = nn.Conv2d(1, 2, 3), nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(18, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc((torch.tanh(self.c1(x)) + torch.tanh(self.c2(x))).flatten(1))

    def ops(self) -> list[Op]:
        c1 = [("conv", 1, 0, 1, 1, "c1", 1.0, 1.0), ("tanh",)]
        c2 = [("conv", 1, 0, 1, 1, "c2", 1.0, 1.0), ("tanh",)]
        return [("sum", c1, c2), ("flatten",), ("linear", "fc", 1.0, 1.0)]


class _DoubleSkip(nn.Module):
    """h + block(h) + h: h feeds three steps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(22)
        self.c1, self.c2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.fc = nn.Linear(50, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.c1(x))
        return self.fc((h + torch.tanh(self.c2(h)) + h).flatten(1))

    def ops(self) -> list[Op]:
        block = [("conv", 1, 1, 1, 1, "c2", 1.0, 1.0), ("tanh",)]
        return [
            ("conv", 1, 1, 1, 1, "c1", 1.0, 1.0),
            ("tanh",),
            ("sum", [("sum", [], block)], []),
            ("flatten",),
            ("linear", "fc", 1.0, 1.0),
        ]


class _ProjectionBlock(nn.Module):
    """A downsampling residual block, c3(tanh(c2(h))) - proj(h) with a strided 1x1 projection
    shortcut (the ResNet pattern when the channels change; subtracted here to cover Sub),
    global average pooling."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(23)
        self.c1 = nn.Conv2d(1, 2, 3, padding=1)
        self.proj = nn.Conv2d(2, 3, 1, stride=2)
        self.c2 = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.c1(x))
        y = torch.tanh(self.c3(torch.tanh(self.c2(h))) - self.proj(h))
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))

    def ops(self) -> list[Op]:
        block = [
            ("conv", 2, 1, 1, 1, "c2", 1.0, 1.0),
            ("tanh",),
            ("conv", 1, 1, 1, 1, "c3", 1.0, 1.0),
        ]
        return [
            ("conv", 1, 1, 1, 1, "c1", 1.0, 1.0),
            ("tanh",),
            ("diff", block, [("conv", 2, 0, 1, 1, "proj", 1.0, 1.0)]),
            ("tanh",),
            ("gap",),
            ("flatten",),
            ("linear", "fc", 1.0, 1.0),
        ]


class _InceptionBlock(nn.Module):
    """Two convolution branches of different kernels joined along the channels (an Inception
    block), then a convolution that reads the 5 joined channels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(24)
        self.c1, self.c2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 3, 1)
        self.c3 = nn.Conv2d(5, 2, 3)
        self.fc = nn.Linear(18, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.cat([torch.tanh(self.c1(x)), torch.tanh(self.c2(x))], dim=1)
        return self.fc(torch.tanh(self.c3(h)).flatten(1))

    def ops(self) -> list[Op]:
        b1 = [("conv", 1, 1, 1, 1, "c1", 1.0, 1.0), ("tanh",)]
        b2 = [("conv", 1, 0, 1, 1, "c2", 1.0, 1.0), ("tanh",)]
        return [
            ("cat", 0, b1, b2),
            ("conv", 1, 0, 1, 1, "c3", 1.0, 1.0),
            ("tanh",),
            ("flatten",),
            ("linear", "fc", 1.0, 1.0),
        ]


class _DenseJoin(nn.Module):
    """A DenseNet-style join: h joined with tanh(c2(h)) along the image rows (axis 2), so h is
    read by the convolution and by the join, and the join is not on the channel axis."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(25)
        self.c1, self.c2 = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)
        self.fc = nn.Linear(50, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.c1(x))
        return self.fc(torch.cat([h, torch.tanh(self.c2(h))], dim=2).flatten(1))

    def ops(self) -> list[Op]:
        block = [("conv", 1, 1, 1, 1, "c2", 1.0, 1.0), ("tanh",)]
        return [
            ("conv", 1, 1, 1, 1, "c1", 1.0, 1.0),
            ("tanh",),
            ("cat", 1, [], block),
            ("flatten",),
            ("linear", "fc", 1.0, 1.0),
        ]


@pytest.mark.parametrize(
    "cls",
    [_TwoBranches, _DoubleSkip, _ProjectionBlock, _InceptionBlock, _DenseJoin],
    ids=["branches", "thrice", "projection", "inception", "dense-join"],
)
def test_onnx_graphs_with_fan_out_and_merges_are_covered(cls: type[_TwoBranches]) -> None:
    src = cls().double().eval()
    model = load_onnx_model(export(src, (1, 5, 5)))
    chain, why = chain_links(model)
    assert chain is not None, why
    assert any(lk.merge is not None for lk in chain.links)
    X = _inputs(n=3)
    values = {n: p.detach() for n, p in src.named_parameters()}
    ratio_J, ratio_F = _check(model, X, *_exact(src.ops(), values, _source_names(model), X))
    print(cls.__name__, "ratios J, F:", ratio_J, ratio_F)
    assert ratio_J >= 1.0 and ratio_F >= 1.0


@pytest.mark.parametrize(
    ("cls", "layer"),
    [(_ProjectionBlock, name) for name in ("c1", "c2", "proj", "fc")]
    + [(_InceptionBlock, name) for name in ("c1", "c2", "c3")],
)
def test_each_branchs_parameters_alone_are_covered(cls: type[_TwoBranches], layer: str) -> None:
    """One layer trainable at a time: its Jacobian columns alone against the bound, so that a
    branch whose cotangent went missing (or got another branch's slice of a join) could not hide
    behind the other layers' blocks."""
    src = cls().double().eval()
    model = select_parameters(load_onnx_model(export(src, (1, 5, 5))), trainable=[f"{layer}.*"])
    X = _inputs(n=2)
    values = {n: p.detach() for n, p in src.named_parameters()}
    _check(model, X, *_exact(src.ops(), values, _source_names(model), X))


class _Product(nn.Module):
    """h * tanh(h): a product of two computed values (the core of attention and gating)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        return self.fc2(h * torch.tanh(h))


class _Broadcast(nn.Module):
    """h + its mean over the features: a merge that broadcasts one operand."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.fc1(x))
        return self.fc2(h + h.mean(dim=1, keepdim=True))


class _JoinSamples(nn.Module):
    """Two branches joined along the sample axis, then reshaped back to n rows: it mixes
    samples."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(8, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        return self.fc2(torch.cat([torch.tanh(h), h], dim=0).reshape(-1, 8))


def test_products_and_broadcasting_merges_are_refused_with_a_reason() -> None:
    prod = load_onnx_model(export(_Product(), (3,)))
    assert "(mul) of two computed values" in (evaluation_bound_refusal(prod) or "")
    bc = load_onnx_model(export(_Broadcast(), (3,)))
    assert "broadcasts them" in (evaluation_bound_refusal(bc) or "")
    samples = load_onnx_model(export(_JoinSamples(), (3,)))
    assert "along the sample axis" in (evaluation_bound_refusal(samples) or "")
    assert "Concat along the sample axis" in (bound_refusal(samples) or "")


def _attained(rng: torch.Generator, sign: float) -> tuple[Tensor, Tensor, list[Fraction]]:
    """A computed value h with bound e and exact values h - sign * e, so the bound is attained."""
    h = torch.randn(50, generator=rng, dtype=torch.float64) * 10.0 ** torch.randint(
        -3, 4, (50,), generator=rng
    )
    e = h.abs() * 1e-3
    exact = [Fraction(float(a)) - sign * Fraction(float(b)) for a, b in zip(h, e, strict=True)]
    return h, e, exact


@pytest.mark.parametrize("kind", ["add", "sub"])
def test_merge_bound_holds_when_both_input_errors_are_attained(kind: str) -> None:
    """Exact rationals: |fl(a +/- b) - (a_exact +/- b_exact)| <= e_y, with the inputs' errors
    at their bounds and of the sign that adds up (dropping either e_a or e_b fails this)."""
    rng = torch.Generator().manual_seed(5)
    ha, ea, xa = _attained(rng, 1.0)
    hb, eb, xb = _attained(rng, 1.0 if kind == "add" else -1.0)
    lk = Link(nn.Identity(), ("a", "b"), "y", merge=kind)
    h, e = _merge(lk, (ha, ea), (hb, eb))
    for i in range(h.numel()):
        want = xa[i] + xb[i] if kind == "add" else xa[i] - xb[i]
        assert abs(Fraction(float(h[i])) - want) <= Fraction(float(e[i]))


def test_accumulated_cotangent_bound_holds_when_every_error_is_attained() -> None:
    rng = torch.Generator().manual_seed(6)
    parts = [_attained(rng, 1.0) for _ in range(3)]
    g, e = _accumulated([(h, eh) for h, eh, _ in parts])
    for i in range(g.numel()):
        want = sum((x[i] for _, _, x in parts), Fraction(0))
        assert abs(Fraction(float(g[i])) - want) <= Fraction(float(e[i]))


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_join_and_its_transpose_route_values_and_bounds_like_autograd(axis: int) -> None:
    """A Concat adds no rounding, so what can go wrong is routing: each input's slice of the
    cotangent and of its bound must be the vector-Jacobian product of torch.cat (inputs of
    different sizes along the axis, so that a swapped or shifted slice shows)."""
    rng = torch.Generator().manual_seed(7)
    shapes = {1: [(2, 1, 3, 4), (2, 3, 3, 4)], 2: [(2, 2, 2, 4), (2, 2, 5, 4)]}
    shapes[-1] = [(2, 2, 3, 1), (2, 2, 3, 3)]
    vals = [torch.randn(sh, generator=rng, dtype=torch.float64) for sh in shapes[axis]]
    errs = [torch.rand(sh, generator=rng, dtype=torch.float64) for sh in shapes[axis]]
    lk = Link(ops.Concat(axis), ("a", "b"), "y", merge="concat")
    y, e = _join(lk, list(zip(vals, errs, strict=True)))
    assert torch.equal(y, torch.cat(vals, dim=axis)) and torch.equal(e, torch.cat(errs, dim=axis))
    k = 3  # the cotangent has one row per output: shape (n, k, *shape of y)
    g = torch.randn(y.shape[0], k, *y.shape[1:], generator=rng, dtype=torch.float64)
    eg = torch.rand(g.shape, generator=rng, dtype=torch.float64)
    env = {"a": (vals[0], errs[0]), "b": (vals[1], errs[1])}
    parts = _split(lk, env, g, eg)
    leaves = [v.clone().requires_grad_(True) for v in vals]
    out = torch.cat(leaves, dim=axis)
    for c in range(k):
        for cot, which in ((g, 0), (eg, 1)):
            want = torch.autograd.grad(out, leaves, cot[:, c], retain_graph=True)
            for part, ref in zip(parts, want, strict=True):
                assert torch.equal(part[which][:, c], ref)
