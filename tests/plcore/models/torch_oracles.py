"""Torch modules exported to ONNX, and their tangent kernel computed by torch itself.

The oracle is ``torch.func.jacrev`` of the ORIGINAL torch module w.r.t. its own parameters, never
anything the importer built. Modules are float64 and exported with ``do_constant_folding=False``
so that the graph keeps the module's parameterization and its constants are exact.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev


def export(module: nn.Module, input_shape: tuple[int, ...], *, opset: int = 17) -> bytes:
    """torch.onnx.export (TorchScript exporter) of a float64 module, no constant folding."""
    module = module.double().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros((2, *input_shape), dtype=torch.float64),),
            buf,  # type: ignore[arg-type]  # a file-like object is accepted at run time
            dynamo=False,
            do_constant_folding=False,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        )
    return buf.getvalue()


def torch_kernel(module: nn.Module, X: Tensor, names: Sequence[str]) -> Tensor:
    """K = sum_p J_p J_p^T over the module's parameters ``names``, J_p = d f / d p by jacrev."""
    own = {k: v.detach() for k, v in module.named_parameters()}
    buffers = {k: v.detach() for k, v in module.named_buffers()}

    def f(p: dict[str, Tensor]) -> Tensor:
        return functional_call(module, {**own, **buffers, **p}, (X,)).reshape(-1)

    J = jacrev(f)({k: own[k] for k in names})
    N = f({}).numel()
    K = torch.zeros(N, N, dtype=torch.float64)
    for j in J.values():
        flat = j.reshape(N, -1)
        K += flat @ flat.T
    return K


class NTKMLP(nn.Module):
    """f(x) = V tanh(W x / sqrt(d) + 0.1 b) / sqrt(h) + 0.1 c: constants multiply parameters."""

    def __init__(self, d: int = 3, h: int = 16, k: int = 2) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = nn.Parameter(torch.randn(h, d, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(h, generator=g, dtype=torch.float64))
        self.V = nn.Parameter(torch.randn(k, h, generator=g, dtype=torch.float64))
        self.c = nn.Parameter(torch.randn(k, generator=g, dtype=torch.float64))
        self.d, self.h = d, h

    def forward(self, x: Tensor) -> Tensor:
        z = torch.tanh(F.linear(x, self.W) / math.sqrt(self.d) + 0.1 * self.b)
        return F.linear(z, self.V) / math.sqrt(self.h) + 0.1 * self.c


class SmallCNN(nn.Module):
    """Conv (weight scaled by 0.5) -> tanh -> AvgPool -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(12, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = F.conv2d(x, 0.5 * self.conv.weight, self.conv.bias, padding=1)
        h = F.avg_pool2d(torch.tanh(h), 2)
        return self.fc(h.flatten(1))


class ResLayerNorm(nn.Module):
    """x -> LayerNorm(x + GELU(Linear(x))) -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.fc1 = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.fc2 = nn.Linear(4, 2)
        with torch.no_grad():
            self.norm.weight.normal_()
            self.norm.bias.normal_()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.norm(x + F.gelu(self.fc1(x))))


class BatchNormMLP(nn.Module):
    """Linear -> BatchNorm1d (eval, non-trivial running statistics) -> tanh -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.fc1 = nn.Linear(3, 6)
        self.bn = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6, 2)
        with torch.no_grad():
            self.bn.running_mean.normal_()
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.normal_()
            self.bn.bias.normal_()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.tanh(self.bn(self.fc1(x))))


class GemmAlphaBeta(nn.Module):
    """addmm with alpha = 2, beta = 0.5 (an ONNX Gemm with alpha, beta != 1) -> GELU -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.W = nn.Parameter(torch.randn(3, 5, dtype=torch.float64))
        self.c = nn.Parameter(torch.randn(5, dtype=torch.float64))
        self.out = nn.Linear(5, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.gelu(torch.addmm(self.c, x, self.W, beta=0.5, alpha=2.0)))


# name -> (module factory, per-sample input shape)
TORCH_CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "ntk_mlp": (NTKMLP, (3,)),
    "cnn_pool": (SmallCNN, (1, 4, 4)),
    "residual_layernorm_gelu": (ResLayerNorm, (4,)),
    "batchnorm_eval": (BatchNormMLP, (3,)),
    "gemm_alpha_beta": (GemmAlphaBeta, (3,)),
}
