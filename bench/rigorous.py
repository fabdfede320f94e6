"""The acceptance models of issue 9 as torch modules, JSON specs with the same weights, and
their ONNX exports; used by tests/plcore/certificate/test_rigorous_path.py (small sizes) and
``python -m bench.rigorous_bench`` (the sizes of the issue)."""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.workloads import DigitsCNN, _export
from plcore import load_model
from plcore.dataset import Dataset
from plcore.models.base import Model


class _NTKLinear(nn.Module):
    """y = W x / sqrt(fan_in) + 0.1 b with W, b ~ N(0, 1)."""

    def __init__(self, fan_in: int, fan_out: int, g: torch.Generator) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(fan_out, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight) / math.sqrt(self.weight.shape[1]) + 0.1 * self.bias


class NTKTanhMLP(nn.Module):
    """tanh MLP in the NTK parameterization (CONTRACT.md: weight_std 1, bias_std 0.1), linear
    output."""

    def __init__(self, d: int, width: int, depth: int, k: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        dims = [d] + [width] * depth + [k]
        self.layers = nn.ModuleList(_NTKLinear(a, b, g) for a, b in itertools.pairwise(dims))

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.tanh(h)
        return h


def mlp_spec(width: int, depth: int) -> dict[str, object]:
    return {
        "type": "mlp",
        "input_dim": 64,
        "widths": [width] * depth,
        "output_dim": 10,
        "activation": "tanh",
        "parameterization": "ntk",
        "weight_std": 1.0,
        "bias_std": 0.1,
        "seed": 0,
    }


CNN_SPEC: dict[str, object] = {
    "type": "layers",
    "input_shape": [1, 8, 8],
    "output_dim": 10,
    "parameterization": "standard",
    "seed": 0,
    "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
        {"type": "activation", "name": "tanh"},
        {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1},
        {"type": "activation", "name": "tanh"},
        {"type": "avgpool2d", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "linear", "out": 10},
    ],
}


class ResidualDigitsCNN(nn.Module):
    """conv 3x3 (1->8) tanh, h + tanh(conv 3x3 (8->8) h), avgpool 2, linear (128->10): 1,954
    parameters; its ONNX export branches (h feeds the block and the Add that ends it)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.c1(x))
        h = h + torch.tanh(self.c2(h))
        return self.head(self.pool(h).flatten(1))


RESIDUAL_CNN_SPEC: dict[str, object] = {
    "type": "layers",
    "input_shape": [1, 8, 8],
    "output_dim": 10,
    "parameterization": "standard",
    "seed": 0,
    "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "activation", "name": "tanh"},
        {
            "type": "residual",
            "layers": [
                {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
                {"type": "activation", "name": "tanh"},
            ],
        },
        {"type": "avgpool2d", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "linear", "out": 10},
    ],
}


class ProjectionDigitsCNN(nn.Module):
    """conv 3x3 (1->a) tanh, then a downsampling residual block tanh(c3(tanh(c2 h)) + proj h)
    with a strided 1x1 projection shortcut (a->b channels, 8x8 -> 4x4), avgpool 2, linear
    (4b->10): 4,362 parameters at a = 8, b = 16. ONNX only: the JSON residual keeps the shape."""

    def __init__(self, a: int = 8, b: int = 16) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, a, 3, padding=1)
        self.c2 = nn.Conv2d(a, b, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(b, b, 3, padding=1)
        self.proj = nn.Conv2d(a, b, 1, stride=2)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(b * 2 * 2, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.c1(x))
        h = torch.tanh(self.c3(torch.tanh(self.c2(h))) + self.proj(h))
        return self.head(self.pool(h).flatten(1))


class InceptionDigitsCNN(nn.Module):
    """conv 3x3 (1->a) tanh, then an Inception block: a 1x1 branch (a->b) and a 3x3 branch
    (a->b), each with tanh, joined along the channels (Concat, 2b channels), avgpool 2, linear
    (32b -> 10): 1,698 parameters at a = 8, b = 4. ONNX only: no JSON spec joins branches."""

    def __init__(self, a: int = 8, b: int = 4) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, a, 3, padding=1)
        self.b1 = nn.Conv2d(a, b, 1)
        self.b3 = nn.Conv2d(a, b, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(2 * b * 4 * 4, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.c1(x))
        h = torch.cat([torch.tanh(self.b1(h)), torch.tanh(self.b3(h))], dim=1)
        return self.head(self.pool(h).flatten(1))


class LayerNormDigitsMLP(nn.Module):
    """linear (64->128), LayerNorm(128), tanh or GELU, linear (128->10): 9,866 parameters; its
    ONNX export (opset 17) has a LayerNormalization node, and writes GELU out in Div / Erf /
    Add / Mul (the transformer MLP block's shape)."""

    def __init__(self, width: int = 128, activation: str = "tanh") -> None:
        super().__init__()
        self.fc1, self.norm = nn.Linear(64, width), nn.LayerNorm(width)
        self.fc2 = nn.Linear(width, 10)
        self.act = torch.tanh if activation == "tanh" else nn.functional.gelu

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.norm(self.fc1(x))))


def layernorm_mlp_spec(activation: str) -> dict[str, object]:
    return {
        "type": "layers",
        "input_shape": [64],
        "output_dim": 10,
        "parameterization": "standard",
        "seed": 0,
        "layers": [
            {"type": "linear", "out": 128},
            {"type": "layernorm"},
            {"type": "activation", "name": activation},
            {"type": "linear", "out": 10},
        ],
    }


def export(module: nn.Module, shape: tuple[int, ...]) -> bytes:
    """The ONNX export of bench.workloads (TorchScript exporter, no constant folding) of a copy
    of a float64 module."""
    example = torch.zeros((2, *shape), dtype=torch.float64)
    return _export(copy.deepcopy(module).double(), example)


def with_weights(spec: dict[str, object], module: nn.Module) -> Model:
    """The JSON model of ``spec`` holding ``module``'s parameters (same order and shapes)."""
    model = load_model(spec)
    ours = list(model.module.parameters())
    theirs = [p.detach() for p in module.parameters()]
    if [p.shape for p in ours] != [p.shape for p in theirs]:
        raise ValueError("the spec and the module have different parameter shapes")
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            a.copy_(b)
    return model


def digits(n: int, image: bool, standardize: bool = True) -> Dataset:
    """The first n scikit-learn digits with one-hot targets (k = 10). Standardized: every pixel
    minus its mean over all 1,797 digits, divided by its standard deviation there (1 for the
    pixels that are always 0), as scikit-learn's StandardScaler fitted on the whole set; else
    the raw values divided by 16 (in [0, 1]). Standardizing removes the large mean direction
    that all digits share: the tangent kernel of the width-256 NTK MLP on 32 digits has condition
    number 153 instead of 8,400 (the CNN's on 64 digits: 3.1e4 instead of 3.6e6)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    A = d.data / 16.0
    if standardize:
        sd = A.std(axis=0)
        A = (A - A.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    X = A[:n].astype(np.float64)
    Y = np.zeros((n, 10))
    Y[np.arange(n), d.target[:n]] = 1.0
    Xt = torch.as_tensor(X.reshape(n, 1, 8, 8) if image else X)
    return Dataset(X=Xt, y=torch.as_tensor(Y), sha256="0" * 64, name="digits")


@dataclass(frozen=True)
class Case:
    """One acceptance case: the model as loaded (JSON or ONNX), the torch source module (the
    replay runs on a copy of it) and the data."""

    name: str
    model: Model
    source: nn.Module
    data: Dataset


def _cases(name: str, source: nn.Module, spec: dict[str, object], data: Dataset) -> list[Case]:
    """The JSON route (``spec`` holding ``source``'s weights) and the ONNX route of one model."""
    shape = tuple(data.X.shape[1:])
    return [
        Case(f"{name}-json", with_weights(spec, source), source, data),
        Case(f"{name}-onnx", load_model(export(source, shape), format="onnx"), source, data),
    ]


def mlp_cases(width: int, depth: int, n: int, standardize: bool = True) -> list[Case]:
    source = NTKTanhMLP(64, width, depth, 10).double()
    data = digits(n, image=False, standardize=standardize)
    return _cases("mlp", source, mlp_spec(width, depth), data)


def cnn_cases(n: int, standardize: bool = True) -> list[Case]:
    torch.manual_seed(0)
    source = DigitsCNN().double()
    return _cases("cnn", source, CNN_SPEC, digits(n, image=True, standardize=standardize))


def layernorm_mlp_cases(n: int, standardize: bool = True, activation: str = "tanh") -> list[Case]:
    torch.manual_seed(0)
    source = LayerNormDigitsMLP(activation=activation).double()
    data = digits(n, image=False, standardize=standardize)
    name = "lnmlp" if activation == "tanh" else f"ln{activation}"
    return _cases(name, source, layernorm_mlp_spec(activation), data)


def _onnx_image_case(name: str, cls: type[nn.Module], n: int, standardize: bool) -> list[Case]:
    """The ONNX route only, for image models that no JSON spec expresses."""
    torch.manual_seed(0)
    source = cls().double()
    data = digits(n, image=True, standardize=standardize)
    onnx = load_model(export(source, tuple(data.X.shape[1:])), format="onnx")
    return [Case(f"{name}-onnx", onnx, source, data)]


def projection_cnn_cases(n: int, standardize: bool = True) -> list[Case]:
    """ONNX only: the JSON residual keeps the shape, so it has no projection shortcut."""
    return _onnx_image_case("projcnn", ProjectionDigitsCNN, n, standardize)


def inception_cnn_cases(n: int, standardize: bool = True) -> list[Case]:
    """ONNX only: no JSON spec joins branches (Concat)."""
    return _onnx_image_case("inccnn", InceptionDigitsCNN, n, standardize)


def residual_cnn_cases(n: int, standardize: bool = True) -> list[Case]:
    torch.manual_seed(0)
    source = ResidualDigitsCNN().double()
    data = digits(n, image=True, standardize=standardize)
    return _cases("rescnn", source, RESIDUAL_CNN_SPEC, data)
