"""The real-size workloads of issue 8 (C1-C4), built in memory and run through ``plcore.certify``.

* C1: a 9,930-parameter tanh CNN (two 3x3 convs, average pooling, linear head), exported with
  ``torch.onnx.export(dynamo=False, do_constant_folding=False)``, on the first n scikit-learn
  digits (8x8, scaled to [0, 1]) with one-hot targets, k = 10.
* C2: the JSON-spec MLP 64-1024-1024-1024-1 (tanh, NTK, ~2.2M parameters) on n = 512 digits
  with a scalar target (the digit / 9).
* C3: a small residual CNN with LayerNorm on 16x16 inputs (digits upsampled), k = 10 (ONNX).
* C4: the README example (NTK tanh MLP of width 4096, n = 16).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from plcore.dataset import Dataset
from plcore.models.base import Model


@dataclass(frozen=True)
class Workload:
    """A model and a dataset ready for ``certify``."""

    name: str
    model: Model
    data: Dataset


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n scikit-learn digits (1,797 ship with it), scaled to [0, 1]; beyond 1,797 the
    images are repeated shifted by one pixel (right, down, left, up, in turn, zero-filled)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    base = (d.data / 16.0).astype(np.float64).reshape(-1, 8, 8)
    images, labels = [base], [d.target]
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        if sum(len(b) for b in images) >= n:
            break
        shifted = np.zeros_like(base)
        src = base[:, max(-dy, 0) : 8 - max(dy, 0), max(-dx, 0) : 8 - max(dx, 0)]
        shifted[:, max(dy, 0) : 8 - max(-dy, 0), max(dx, 0) : 8 - max(-dx, 0)] = src
        images.append(shifted)
        labels.append(d.target)
    X = np.concatenate(images)[:n].reshape(-1, 64)
    if X.shape[0] < n:
        raise ValueError(f"at most {X.shape[0]} digits (with shifts), asked for {n}")
    return X, np.concatenate(labels)[:n].astype(np.int64)


def _one_hot(labels: np.ndarray, k: int = 10) -> np.ndarray:
    Y = np.zeros((labels.size, k))
    Y[np.arange(labels.size), labels] = 1.0
    return Y


class DigitsCNN(nn.Module):
    """conv 3x3 (1->16) tanh, conv 3x3 (16->32) tanh, avgpool 2, linear (512->10): 9,930
    parameters, the model of issue 8."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.c1(x))
        h = self.pool(torch.tanh(self.c2(h)))
        return self.head(h.flatten(1))


class ResLNCNN(nn.Module):
    """A small residual CNN with LayerNorm on 1x16x16 inputs, 10 outputs (7,098 parameters:
    over-parameterized for n = 256, k = 10, N = 2,560)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.block = nn.Conv2d(16, 16, 3, padding=1)
        self.norm = nn.LayerNorm([16, 8, 8])
        self.pool2 = nn.AvgPool2d(2)
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.tanh(self.stem(x)))
        h = h + torch.tanh(self.block(h))
        h = self.pool2(self.norm(h))
        return self.head(h.flatten(1))


def _export(module: nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    module.eval()
    torch.onnx.export(
        module,
        (example,),
        buf,  # type: ignore[arg-type]  # a file-like object is accepted
        dynamo=False,
        do_constant_folding=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )
    return buf.getvalue()


def _dataset(X: np.ndarray, Y: np.ndarray, name: str) -> Dataset:
    return Dataset(
        X=torch.as_tensor(X, dtype=torch.float64),
        y=torch.as_tensor(Y, dtype=torch.float64),
        sha256="0" * 64,
        name=name,
    )


def c1(n: int) -> Workload:
    """C1: the digits CNN (9,930 parameters) on the first n digits, one-hot targets."""
    from plcore import load_model

    torch.manual_seed(0)
    net = DigitsCNN()
    model = load_model(_export(net, torch.zeros(2, 1, 8, 8)), format="onnx")
    X, labels = _digits(n)
    return Workload(f"C1-{n}", model, _dataset(X.reshape(n, 1, 8, 8), _one_hot(labels), "digits"))


def c2(n: int = 512) -> Workload:
    """C2: MLP 64-1024-1024-1024-1, tanh, NTK (JSON spec), target digit / 9."""
    from plcore import load_model

    spec = {
        "type": "mlp",
        "input_dim": 64,
        "widths": [1024, 1024, 1024],
        "output_dim": 1,
        "activation": "tanh",
        "parameterization": "ntk",
        "seed": 0,
    }
    X, labels = _digits(n)
    return Workload(f"C2-{n}", load_model(spec), _dataset(X, labels[:, None] / 9.0, "digits"))


def c3(n: int = 256) -> Workload:
    """C3: residual CNN with LayerNorm on digits upsampled to 16x16 (nearest), one-hot targets."""
    from plcore import load_model

    torch.manual_seed(0)
    net = ResLNCNN()
    model = load_model(_export(net, torch.zeros(2, 1, 16, 16)), format="onnx")
    X, labels = _digits(n)
    X16 = np.kron(X.reshape(n, 8, 8), np.ones((2, 2))).reshape(n, 1, 16, 16)
    return Workload(f"C3-{n}", model, _dataset(X16, _one_hot(labels), "digits16"))


def c4() -> Workload:
    """C4: the README example (examples/mlp_tanh_4096.json on examples/sphere16.npz)."""
    from plcore import load_dataset, load_model

    root = Path(__file__).resolve().parent.parent / "examples"
    model = load_model((root / "mlp_tanh_4096.json").read_bytes())
    return Workload("C4", model, load_dataset((root / "sphere16.npz").read_bytes()))


BUILDERS = {
    "C1-128": lambda: c1(128),
    "C1-512": lambda: c1(512),
    # N = 40,960 > m = 9,930: under-parameterized, the parameter-space Gram J^T J replaces K
    "C1-4096": lambda: c1(4096),
    "C2": lambda: c2(512),
    "C3": lambda: c3(256),
    "C4": c4,
}
