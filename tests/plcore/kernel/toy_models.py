"""Small models built directly from plcore.models.layers, for the kernel tests.

They cover every layer type the structured kernel knows (Dense with NTK scales, Dense on a
token axis, Conv2d with stride / padding / groups, Bias, Scale, a layer called twice) without
depending on the loaders.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from plcore.models.base import Model
from plcore.models.layers import Activation, Bias, Conv2d, Dense, Scale


def _model(module: nn.Module, input_shape: tuple[int, ...], k: int, name: str) -> Model:
    module = module.double().eval()
    return Model(
        module=module,
        input_shape=input_shape,
        output_dim=k,
        format="json",
        sha256="0" * 64,
        description=name,
    )


def ntk_dense(
    d_in: int, d_out: int, g: torch.Generator, *, sigma_w: float = 1.0, sigma_b: float = 0.1
) -> Dense:
    """A Dense layer in the NTK parameterization: (sigma_w / sqrt(d_in)) W h + sigma_b b."""
    W = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    b = torch.randn(d_out, generator=g, dtype=torch.float64)
    return Dense(W, b, weight_scale=sigma_w / math.sqrt(d_in), bias_scale=sigma_b)


def mlp(
    d: int,
    widths: list[int],
    k: int,
    activation: str = "tanh",
    *,
    seed: int = 0,
    sigma_w: float = 1.0,
    sigma_b: float = 0.1,
    output_activation: str | None = None,
) -> Model:
    """An NTK-parameterized MLP d -> widths -> k."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    fan_in = d
    for width in widths:
        layers += [ntk_dense(fan_in, width, g, sigma_w=sigma_w, sigma_b=sigma_b)]
        layers += [Activation(activation)]
        fan_in = width
    layers.append(ntk_dense(fan_in, k, g, sigma_w=sigma_w, sigma_b=sigma_b))
    if output_activation is not None:
        layers.append(Activation(output_activation))
    return _model(nn.Sequential(*layers), (d,), k, f"mlp {d}-{widths}-{k} {activation}")


def cnn(*, seed: int = 0, k: int = 3, groups: int = 2) -> Model:
    """Conv(stride 2, padding 1) -> tanh -> grouped Conv -> Bias -> Scale -> flatten -> Dense."""
    g = torch.Generator().manual_seed(seed)
    conv1 = Conv2d(
        torch.randn(4, 2, 3, 3, generator=g) / 3.0,
        torch.randn(4, generator=g),
        stride=(2, 2),
        padding=(1, 1),
    )
    conv2 = Conv2d(
        torch.randn(4, 4 // groups, 2, 2, generator=g) / 2.0,
        torch.randn(4, generator=g),
        groups=groups,
        dilation=(1, 1),
        weight_scale=0.7,
        bias_scale=0.3,
    )
    bias = Bias(torch.randn(4, 1, 1, generator=g), scale=0.5)
    scale = Scale(1.0 + 0.1 * torch.randn(1, 2, 2, generator=g), scale=1.2)
    head = Dense(torch.randn(k, 16, generator=g) / 4.0, torch.randn(k, generator=g))
    module = nn.Sequential(
        conv1, Activation("tanh"), conv2, bias, Activation("gelu"), scale, nn.Flatten(), head
    )
    return _model(module, (2, 6, 6), k, "cnn")


class _Tokens(nn.Module):
    """(n, P*d) -> Dense on tokens (n, P, d) -> erf -> Dense shared (called twice) -> pool."""

    def __init__(self, P: int, d: int, h: int, k: int, g: torch.Generator) -> None:
        super().__init__()
        self.P, self.d = P, d
        self.embed = ntk_dense(d, h, g)
        self.mix = ntk_dense(h, h, g)
        self.norm = Scale(1.0 + 0.1 * torch.randn(h, generator=g))
        self.shift = Bias(0.1 * torch.randn(1, 1, h, generator=g))
        self.head = ntk_dense(h, k, g)

    def forward(self, x: Tensor) -> Tensor:
        t = torch.erf(self.embed(x.reshape(x.shape[0], self.P, self.d)))
        t = torch.tanh(self.mix(t))
        t = torch.tanh(self.mix(t))  # the same layer twice: its J columns sum over both calls
        t = self.shift(self.norm(t))
        return self.head(t.mean(dim=1))


def token_model(*, P: int = 3, d: int = 4, h: int = 5, k: int = 2, seed: int = 0) -> Model:
    """A Dense model on a token axis (x of shape (n, P, d) inside), with a reused layer."""
    g = torch.Generator().manual_seed(seed)
    return _model(_Tokens(P, d, h, k, g), (P * d,), k, "tokens")


class _Unsupported(nn.Module):
    """A model with a plain nn.Linear: the structured method must refuse it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.lin(x))


def unsupported_model(seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return _model(_Unsupported(), (3,), 2, "nn.Linear")


def inputs(model: Model, n: int, seed: int = 1) -> Tensor:
    """n standard normal inputs of the model's input shape (float64)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *model.input_shape, generator=g, dtype=torch.float64)


def dense_reference_kernel(model: Model, X: Tensor, w: Tensor) -> Tensor:
    """J J^T from torch.autograd.functional.jacobian of the flat map (not plcore.kernel)."""
    J = torch.autograd.functional.jacobian(lambda v: model.apply_flat(v, X), w)
    return J @ J.T


def rel_err(A: Tensor, B: Tensor) -> float:
    """||A - B||_F / ||B||_F."""
    return float(torch.linalg.norm(A - B) / torch.linalg.norm(B))
