"""Tiny NTK-parameterized MLPs built directly from plcore.models.layers (shared test helper)."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from plcore.dataset import Dataset
from plcore.models.base import Model
from plcore.models.layers import Activation, Dense


def tiny_mlp(
    widths: list[int],
    activation: str = "tanh",
    *,
    seed: int = 0,
    weight_std: float = 1.0,
    bias_std: float = 0.5,
    output_activation: str | None = None,
    bias: bool = True,
) -> Model:
    """Sequential Dense(weight_scale=sigma/sqrt(fan_in)) / Activation chain, weights ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        W = torch.randn(b, a, generator=g, dtype=torch.float64)
        c = torch.randn(b, generator=g, dtype=torch.float64) if bias else None
        mods.append(Dense(W, c, weight_scale=weight_std / math.sqrt(a), bias_scale=bias_std))
        if i < len(widths) - 2:
            mods.append(Activation(activation))
    if output_activation is not None:
        mods.append(Activation(output_activation))
    return Model(
        module=nn.Sequential(*mods).double().eval(),
        input_shape=(widths[0],),
        output_dim=widths[-1],
        format="json",
        sha256="test",
    )


def tiny_data(n: int, d: int, k: int, *, seed: int = 1) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, k, generator=g, dtype=torch.float64)
    return Dataset(X=X, y=y, sha256="test")


NETS = [
    # (widths, activation, n samples): m ~ 20-60, N ~ 2-6
    ([3, 6, 2], "tanh", 2),
    ([3, 5, 4, 2], "sigmoid", 2),
    ([2, 8, 1], "softplus", 5),
    ([4, 7, 3], "gelu", 2),
    ([2, 5, 1], "erf", 2),
]


def tiny_problem(widths: list[int], act: str, n: int) -> tuple[Model, Tensor]:
    """One of NETS with its inputs X (deterministic seeds)."""
    return tiny_mlp(widths, act, seed=len(widths) + n), tiny_data(n, widths[0], widths[-1]).X
