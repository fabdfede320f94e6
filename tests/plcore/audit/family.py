"""A family of small random models for the bound audit (tests/plcore/audit/test_bound_family.py).

MLPs of depth 1-3 (hidden layers) with every smooth activation, NTK parameterization, built
directly from plcore.models.layers; a tied variant (one hidden module applied twice, the way a
user builds weight tying by hand); a small CNN (Conv2d, activation, Flatten, Dense). Sizes keep
m <= ~80 and N <= 4 so that dense Hessians (N x m x m) and 50-digit eigenvalues stay cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plcore.models.base import Model
from plcore.models.layers import Activation, Conv2d, Dense

SMOOTH = ("tanh", "erf", "sigmoid", "softplus", "gelu", "silu", "sin", "identity")


@dataclass(frozen=True)
class Case:
    """A model, its inputs X (n, ...) and a label for test ids."""

    name: str
    model: Model
    X: Tensor


def _dense(a: int, b: int, g: torch.Generator, bias: bool = True) -> Dense:
    W = torch.randn(b, a, generator=g, dtype=torch.float64)
    c = torch.randn(b, generator=g, dtype=torch.float64) if bias else None
    return Dense(W, c, weight_scale=1.0 / math.sqrt(a), bias_scale=0.5)


def _model(mods: list[nn.Module], input_shape: tuple[int, ...], k: int, acts: str) -> Model:
    return Model(
        module=nn.Sequential(*mods).double().eval(),
        input_shape=input_shape,
        output_dim=k,
        format="json",
        sha256="audit",
        activations=(acts,),
    )


def mlp(depth: int, act: str, *, seed: int, d: int = 3, width: int = 5, k: int = 1) -> Model:
    """depth hidden layers of ``width`` units, activation ``act``, linear output."""
    g = torch.Generator().manual_seed(seed)
    sizes = [d] + [width] * depth + [k]
    mods: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        mods.append(_dense(sizes[i], sizes[i + 1], g))
        if i < len(sizes) - 2:
            mods.append(Activation(act))
    return _model(mods, (d,), k, act)


def tied_mlp(act: str, *, seed: int, d: int = 3, width: int = 4) -> Model:
    """x -> out(phi(H phi(H phi(In x)))): the hidden module H is applied twice (tied weights)."""
    g = torch.Generator().manual_seed(seed)
    first, hidden, last = _dense(d, width, g), _dense(width, width, g), _dense(width, 1, g)
    mods: list[nn.Module] = [first, Activation(act), hidden, Activation(act), hidden]
    return _model([*mods, Activation(act), last], (d,), 1, act)


def cnn(act: str, *, seed: int) -> Model:
    """Conv2d(1 -> 2, 2x2) on 3x3 images, activation, Flatten, Dense(8 -> 1)."""
    g = torch.Generator().manual_seed(seed)
    conv = Conv2d(
        torch.randn(2, 1, 2, 2, generator=g, dtype=torch.float64),
        torch.randn(2, generator=g, dtype=torch.float64),
        weight_scale=0.5,
        bias_scale=0.5,
    )
    mods: list[nn.Module] = [conv, Activation(act), nn.Flatten(), _dense(8, 1, g)]
    return _model(mods, (1, 3, 3), 1, act)


def inputs(n: int, shape: tuple[int, ...], seed: int) -> Tensor:
    g = torch.Generator().manual_seed(1000 + seed)
    X = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    return X / X.reshape(n, -1).norm(dim=1).reshape(n, *([1] * len(shape)))


def mlp_cases() -> list[Case]:
    """Every smooth activation at depth 1; depths 2 and 3 for a rotating subset."""
    out = []
    for i, act in enumerate(SMOOTH):
        out.append(Case(f"mlp1-{act}", mlp(1, act, seed=i), inputs(3, (3,), i)))
    for i, act in enumerate(("tanh", "silu", "gelu", "sigmoid")):
        depth = 2 + i % 2
        out.append(
            Case(f"mlp{depth}-{act}", mlp(depth, act, seed=10 + i, width=4), inputs(3, (3,), i))
        )
    return out
