"""The building blocks every loaded model is made of.

Both loaders (JSON specs and ONNX) build models only from these modules, so that the
structured tangent kernel (``plcore.kernel.structured``) and the analytic smoothness bound
(``plcore.estimate.analytic``) can recognise every trainable parameter:

* :class:`Dense`   y = weight_scale * x W^T + bias_scale * b   (acts on the last axis)
* :class:`Conv2d`  y = weight_scale * conv2d(x, W) + bias_scale * b
* :class:`Bias`    y = x + scale * b      (b broadcast against x; ONNX Add with an initializer)
* :class:`Scale`   y = x * (scale * g)    (g broadcast against x; ONNX Mul, LayerNorm gamma)
* :class:`Activation`  elementwise phi, with documented derivative bounds

With ``weight_scale = sigma_w / sqrt(fan_in)`` and ``bias_scale = sigma_b`` a Dense layer is the
NTK parameterization of CONTRACT.md; with scales 1 it is a plain affine layer.

A layer given an ``nn.Parameter`` keeps that very object (so two layers can share one tensor, as
tied ONNX initializers do); any other tensor is copied into a new parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn


@dataclass(frozen=True)
class ActivationInfo:
    """Facts about an elementwise activation phi: R -> R.

    ``d1_sup`` = sup_x |phi'(x)|, ``d2_sup`` = sup_x |phi''(x)| (``None`` when phi is not twice
    differentiable, e.g. ReLU). ``lipschitz`` equals ``d1_sup``. The values are closed forms,
    checked against finite differences on a grid in the tests.
    """

    name: str
    d1_sup: float
    d2_sup: float | None
    twice_differentiable: bool


_SQRT_2PI: Final = math.sqrt(2.0 * math.pi)


def _gelu_d1_sup() -> float:
    # phi'(x) = Phi(x) + x phi(x); maximum at x = sqrt(2) where phi''(x) = phi(x) (2 - x^2) = 0.
    x = math.sqrt(2.0)
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))) + x * math.exp(-x * x / 2) / _SQRT_2PI


ACTIVATIONS: Final[dict[str, ActivationInfo]] = {
    "identity": ActivationInfo("identity", 1.0, 0.0, True),
    # tanh'' = -2 tanh (1 - tanh^2), maximal at tanh = 1/sqrt(3): 4 / (3 sqrt 3)
    "tanh": ActivationInfo("tanh", 1.0, 4.0 / (3.0 * math.sqrt(3.0)), True),
    # erf' = 2/sqrt(pi) e^{-x^2}; erf'' = -4x/sqrt(pi) e^{-x^2}, maximal at |x| = 1/sqrt 2
    "erf": ActivationInfo(
        "erf", 2.0 / math.sqrt(math.pi), 2.0 * math.sqrt(2.0 / math.pi) * math.exp(-0.5), True
    ),
    # sigma' = s(1-s) <= 1/4; sigma'' = s(1-s)(1-2s), maximal 1/(6 sqrt 3)
    "sigmoid": ActivationInfo("sigmoid", 0.25, 1.0 / (6.0 * math.sqrt(3.0)), True),
    # softplus' = sigmoid <= 1; softplus'' = sigmoid' <= 1/4
    "softplus": ActivationInfo("softplus", 1.0, 0.25, True),
    # exact (erf) GELU; phi'' = phi_N(x)(2 - x^2), maximal at 0: 2/sqrt(2 pi)
    "gelu": ActivationInfo("gelu", _gelu_d1_sup(), 2.0 / _SQRT_2PI, True),
    # silu' = s + x s (1-s), sup ~ 1.0998 at x ~ 2.3994; silu'' = s(1-s)(2 + x(1-2s)) <= 1/2 at 0
    "silu": ActivationInfo("silu", 1.0998393194332553, 0.5, True),
    "sin": ActivationInfo("sin", 1.0, 1.0, True),
    "relu": ActivationInfo("relu", 1.0, None, False),
}


def _apply(name: str, x: Tensor) -> Tensor:
    if name == "identity":
        return x
    if name == "tanh":
        return torch.tanh(x)
    if name == "erf":
        return torch.erf(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "softplus":
        return Fn.softplus(x)
    if name == "gelu":
        return Fn.gelu(x)
    if name == "silu":
        return Fn.silu(x)
    if name == "sin":
        return torch.sin(x)
    if name == "relu":
        return torch.relu(x)
    raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")


def as_parameter(value: Tensor, shape: tuple[int, ...] | None = None) -> nn.Parameter:
    """``value`` itself when it is already an ``nn.Parameter`` (shared, must have ``shape``),
    else a new parameter holding a copy reshaped to ``shape``."""
    if isinstance(value, nn.Parameter):
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(f"shared parameter has shape {tuple(value.shape)}, need {shape}")
        return value
    v = value.detach().clone()
    return nn.Parameter(v if shape is None else v.reshape(shape))


class Activation(nn.Module):
    """Elementwise activation phi, named by one of :data:`ACTIVATIONS`."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
        self.name = name
        self.info = ACTIVATIONS[name]

    def forward(self, x: Tensor) -> Tensor:
        return _apply(self.name, x)

    def extra_repr(self) -> str:
        return self.name


class Dense(nn.Module):
    """y = weight_scale * x W^T + bias_scale * b on the last axis of x.

    ``weight`` has shape (out_features, in_features) like ``nn.Linear``.
    """

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        *,
        weight_scale: float = 1.0,
        bias_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if weight.ndim != 2:
            raise ValueError(f"Dense weight must be 2-D, got shape {tuple(weight.shape)}")
        self.weight = as_parameter(weight)
        self.bias = None if bias is None else as_parameter(bias, (bias.numel(),))
        self.weight_scale = float(weight_scale)
        self.bias_scale = float(bias_scale)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        y = self.weight_scale * (x @ self.weight.T)
        if self.bias is not None:
            y = y + self.bias_scale * self.bias
        return y

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, "
            f"weight_scale={self.weight_scale:.4g}, bias_scale={self.bias_scale:.4g}"
        )


class Conv2d(nn.Module):
    """y = weight_scale * conv2d(x, W) + bias_scale * b (NCHW; weight (C_out, C_in/g, kh, kw))."""

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        *,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
        weight_scale: float = 1.0,
        bias_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if weight.ndim != 4:
            raise ValueError(f"Conv2d weight must be 4-D, got shape {tuple(weight.shape)}")
        self.weight = as_parameter(weight)
        self.bias = None if bias is None else as_parameter(bias, (bias.numel(),))
        self.stride = tuple(stride)
        self.padding = tuple(padding)
        self.dilation = tuple(dilation)
        self.groups = int(groups)
        self.weight_scale = float(weight_scale)
        self.bias_scale = float(bias_scale)

    def forward(self, x: Tensor) -> Tensor:
        y = self.weight_scale * Fn.conv2d(
            x, self.weight, None, self.stride, self.padding, self.dilation, self.groups
        )
        if self.bias is not None:
            y = y + self.bias_scale * self.bias.reshape(1, -1, 1, 1)
        return y


class Bias(nn.Module):
    """y = x + scale * b, with the parameter b broadcast against x (batch axis first)."""

    def __init__(self, value: Tensor, *, scale: float = 1.0) -> None:
        super().__init__()
        self.bias = as_parameter(value)
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.scale * self.bias


class Scale(nn.Module):
    """y = x * (scale * g), with the parameter g broadcast against x (batch axis first)."""

    def __init__(self, value: Tensor, *, scale: float = 1.0) -> None:
        super().__init__()
        self.weight = as_parameter(value)
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        return x * (self.scale * self.weight)


PARAMETERIZED_LAYERS: Final = (Dense, Conv2d, Bias, Scale)
