"""The running-error bounds of chains with LayerNorm against 50-digit recomputations.

The references come from the mp interpreter of ``test_rounding_conv`` (the LayerNorm written
there from its definition: mean, biased variance, eps, affine part), F in 50 digits and J by the
complex step, independently of :mod:`plcore.estimate.rounding_norm`.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from plcore import load_model
from plcore.estimate.rounding import evaluation_bound_refusal, evaluation_error_bound
from plcore.models import onnx_ops as ops
from plcore.models.base import Model
from plcore.models.onnx_import import load_onnx_model
from tests.plcore.estimate.test_rounding_conv import (
    Op,
    _check,
    _exact,
    _inputs,
    _source_names,
    _spec_ops,
)
from tests.plcore.models.torch_oracles import export

#: measured bound / true error for these nets: (ratios printed by the tests' -s output); the
#: worst-case LayerNorm terms (gamma_{D+2} in the variance, the second derivative 1 / s^2 times
#: the forward bound) compound over two normalisations, so the looseness allowed is 1e6, not the
#: 1e4 of the conv chains
LOOSE = 1e6

MLP_SPEC: dict[str, Any] = {
    "type": "layers",
    "input_shape": [4],
    "output_dim": 2,
    "layers": [
        {"type": "linear", "out": 6},
        {"type": "layernorm"},
        {"type": "activation", "name": "tanh"},
        {"type": "linear", "out": 5},
        {"type": "layernorm", "elementwise_affine": False, "eps": 1e-3},
        {"type": "activation", "name": "tanh"},
        {"type": "linear", "out": 2},
    ],
    "weight_std": 1.5,
    "bias_std": 0.5,
    "seed": 6,
}
CNN_SPEC: dict[str, Any] = {
    "type": "layers",
    "input_shape": [1, 5, 5],
    "output_dim": 2,
    "layers": [
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "layernorm"},
        {"type": "activation", "name": "tanh"},
        {
            "type": "residual",
            "layers": [
                {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
                {"type": "layernorm"},
                {"type": "activation", "name": "tanh"},
            ],
        },
        {"type": "global_avgpool"},
        {"type": "linear", "out": 2},
    ],
    "weight_std": 1.5,
    "bias_std": 0.5,
    "seed": 7,
}


def _randomize_affine(model: Model) -> None:
    """gamma and beta away from 1 and 0, so that the affine links carry weight."""
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for name, p in model.module.named_parameters():
            if name.endswith("scale.weight") or name.endswith("shift.bias"):
                p.copy_(p + 0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _json_case(spec: dict[str, Any], X: Tensor) -> tuple[float, float]:
    model = load_model(spec)
    _randomize_affine(model)
    assert evaluation_bound_refusal(model) is None
    values = {n: p.detach() for n, p in model.module.named_parameters()}
    ops_ = _spec_ops(model, spec["layers"])
    result: tuple[float, float] = _check(
        model, X, *_exact(ops_, values, list(model.named_params()), X), loose=LOOSE
    )
    print(spec["input_shape"], "ratios J, F:", result)
    return result


def test_json_mlp_with_layernorm_is_covered() -> None:
    ratio_J, ratio_F = _json_case(MLP_SPEC, _inputs((4,), n=3))
    assert ratio_J >= 1.0 and ratio_F >= 1.0


def test_json_cnn_with_layernorm_over_the_whole_image_and_a_residual_is_covered() -> None:
    ratio_J, ratio_F = _json_case(CNN_SPEC, _inputs())
    assert ratio_J >= 1.0 and ratio_F >= 1.0


class _OffsetLN(nn.Module):
    """linear with a large common bias (1e3: the mean subtraction cancels 3 digits),
    LayerNorm over the last axis, tanh, linear."""

    spread = 0.05

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(9)
        self.fc1, self.ln, self.fc2 = nn.Linear(4, 6), nn.LayerNorm(6, eps=1e-6), nn.Linear(6, 2)
        with torch.no_grad():
            self.fc1.bias.fill_(1e3)
            self.fc1.weight.mul_(self.spread)
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.5, 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.tanh(self.ln(self.fc1(x))))

    def ops(self, eps: float) -> list[Op]:
        return [
            ("linear", "fc1", 1.0, 1.0),
            ("ln", "ln.weight", "ln.bias", eps, True),
            ("tanh",),
            ("linear", "fc2", 1.0, 1.0),
        ]


class _FlatLN(_OffsetLN):
    """The same with a spread of about 1e-4 around 1e3: var ~ 1e-8 < eps, 7 digits cancel."""

    spread = 1e-4


class _RowLN(nn.Module):
    """conv, LayerNorm over the last image axis only (rows of 5), tanh, flatten, linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(10)
        self.conv, self.ln = nn.Conv2d(1, 2, 3, padding=1), nn.LayerNorm(5)
        self.fc = nn.Linear(50, 2)
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.5, 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.tanh(self.ln(self.conv(x))).flatten(1))

    def ops(self, eps: float) -> list[Op]:
        return [
            ("conv", 1, 1, 1, 1, "conv", 1.0, 1.0),
            ("ln", "ln.weight", "ln.bias", eps, True),
            ("tanh",),
            ("flatten",),
            ("linear", "fc", 1.0, 1.0),
        ]


@pytest.mark.parametrize(
    ("cls", "shape"),
    [(_OffsetLN, (4,)), (_FlatLN, (4,)), (_RowLN, (1, 5, 5))],
    ids=["offset-mlp", "eps-dominated-mlp", "row-cnn"],
)
def test_onnx_layernormalization_is_covered(cls: type[_OffsetLN | _RowLN], shape: tuple) -> None:
    src = cls().double().eval()
    model = load_onnx_model(export(src, shape))
    assert any(isinstance(m, ops.LayerNormPlain) for m in model.module.modules())
    assert evaluation_bound_refusal(model) is None
    X = _inputs(shape, n=3)
    values = {n: p.detach() for n, p in src.named_parameters()}
    eps = next(m.eps for m in model.module.modules() if isinstance(m, ops.LayerNormPlain))
    exact = _exact(src.ops(eps), values, _source_names(model), X)
    ratio_J, ratio_F = _check(model, X, *exact, loose=LOOSE)
    print(cls.__name__, "ratios J, F:", ratio_J, ratio_F)
    assert ratio_J >= 1.0 and ratio_F >= 1.0


def _torch_twin(model: Model) -> nn.Sequential:
    """MLP_SPEC as torch layers with the JSON model's values (its NTK scales folded in)."""
    mods = dict(model.module.named_modules())
    twin = nn.Sequential(
        nn.Linear(4, 6),
        nn.LayerNorm(6),
        nn.Tanh(),
        nn.Linear(6, 5),
        nn.LayerNorm(5, eps=1e-3, elementwise_affine=False),
        nn.Tanh(),
        nn.Linear(5, 2),
    ).double()
    with torch.no_grad():
        for i in (0, 3, 6):
            src, dst = mods[str(i)], twin[i]
            dst.weight.copy_(src.weight * src.weight_scale)
            dst.bias.copy_(src.bias * src.bias_scale)
        twin[1].weight.copy_(mods["1.scale"].weight)
        twin[1].bias.copy_(mods["1.shift"].bias)
    return twin


def test_json_layernorm_mlp_and_its_onnx_export_get_bounds_of_the_same_size() -> None:
    """The JSON route and the ONNX LayerNormalization route of the same function: both
    bounded, of the same size (the chains differ: the export folds the NTK scales)."""
    model = load_model(MLP_SPEC)
    _randomize_affine(model)
    twin = _torch_twin(model)
    X = _inputs((4,), n=3)
    torch.testing.assert_close(twin(X).reshape(-1), model.apply_flat(model.flat_params(), X))
    onnx_model = load_onnx_model(export(twin, (4,)))
    a, b = evaluation_error_bound(model, X), evaluation_error_bound(onnx_model, X)
    assert a is not None and b is not None, evaluation_bound_refusal(onnx_model)
    assert 0.2 < a.jacobian_fro / b.jacobian_fro < 5.0
    assert 0.2 < a.output / b.output < 5.0


def test_a_layernorm_whose_variance_cannot_be_bounded_away_from_zero_gets_no_finite_bound() -> None:
    """Inputs equal up to far less than their rounding, eps tiny: sL ~ sqrt(eps) and the
    variance's rounding is far larger, so sLc <= 0 and the bound is infinite (refused
    downstream), never a finite number that might be wrong."""
    spec = MLP_SPEC | {
        "layers": [
            {"type": "linear", "out": 6},
            {"type": "layernorm", "eps": 1e-300},
            {"type": "linear", "out": 2},
        ]
    }
    model = load_model(spec)
    with torch.no_grad():
        w = dict(model.module.named_parameters())
        w["0.weight"].mul_(1e-30)
        w["0.bias"].fill_(1e8)
    ev = evaluation_error_bound(model, _inputs((4,), n=2))
    assert ev is not None and ev.jacobian_fro == float("inf") and ev.output == float("inf")


def test_layernorm_over_the_sample_axis_is_refused() -> None:
    model = load_model(MLP_SPEC)
    assert evaluation_bound_refusal(model) is None
    model.module[1] = ops.LayerNormPlain(0, 1e-5)  # normalises each feature across samples
    assert "normalises over the sample axis" in (evaluation_bound_refusal(model) or "")
