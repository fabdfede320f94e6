"""Shared data of the study tests: 16 points on the sphere of radius sqrt(8) in R^8 with random
targets (the size at which the slope estimate was measured stable; docs/theory.md)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from plcore.data import load_dataset
from plcore.dataset import Dataset


def sphere_data(n: int = 16, d: int = 8, seed: int = 0) -> Dataset:
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, d))
    X *= math.sqrt(d) / np.linalg.norm(X, axis=1, keepdims=True)
    return load_dataset({"X": X, "y": 0.5 * g.standard_normal(n)})


def tanh_mlp(d: int = 8, **extra: Any) -> dict[str, Any]:
    return {
        "type": "mlp",
        "input_dim": d,
        "widths": [64],
        "output_dim": 1,
        "activation": "tanh",
        "parameterization": "ntk",
        **extra,
    }


@pytest.fixture(scope="package")
def sphere16() -> Dataset:
    return sphere_data()
