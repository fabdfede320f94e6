"""Last-layer fine-tuning (frozen features) is certified rigorously: F is affine in the trainable
parameters, so beta_F = 0 is proven structurally; the report lists what was differentiated.
Every certificate is re-checked by the independent GD loop of tests/plcore/certify_cases.py."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from plcore.certification import certify
from plcore.dataset import Dataset
from plcore.errors import OptionsError
from plcore.models.base import Model
from plcore.models.layers import Dense
from plcore.models.loader import load_model
from plcore.models.onnx_import import load_onnx_model
from plcore.models.params import select_parameters
from plcore.options import CertifyOptions
from tests.plcore.certify_cases import dataset, independent_gd_check
from tests.plcore.models.torch_oracles import NTKMLP, SmallCNN, export

SPEC = {
    "type": "mlp",
    "input_dim": 3,
    "widths": [32],
    "output_dim": 1,
    "activation": "tanh",
    "parameterization": "ntk",
    "seed": 0,
}


def data(n: int, k: int) -> Dataset:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.sin(X @ torch.randn(3, k, generator=g, dtype=torch.float64))
    return dataset(X, y, "frozen-features")


def features_rank(model: Model, X: torch.Tensor) -> int:
    """Rank of [phi(X), 1]: the hidden features (first Dense layer, then tanh) and the bias."""
    hidden = model.module[0]
    assert isinstance(hidden, Dense)
    phi = torch.tanh(hidden(X)).detach()
    return int(torch.linalg.matrix_rank(torch.cat([phi, torch.ones(len(X), 1)], dim=1)))


def test_spec_with_frozen_hidden_layer_is_certified_rigorously() -> None:
    d = data(12, 1)
    model = load_model(SPEC)
    assert features_rank(model, d.X) == 12
    report = certify(model, d, CertifyOptions(budget="fast", frozen=["0.*"]))
    assert report.verdict == "certified" and report.tier == "rigorous", report.reasons
    assert report.problem.n_params == 33
    assert report.constants.beta_F.upper_bound == 0.0
    assert "affine in the trainable parameters" in report.constants.beta_F.method
    # the rounding inside the evaluation of F and J is covered (docs/theory.md section 15)
    assert "running-error bound" in report.conventions["floating_point"]
    assert "E_J = " in report.initial.lower_bound_method
    assert [(p.name, p.trainable) for p in report.parameters] == [
        ("0.weight", False),
        ("0.bias", False),
        ("2.weight", True),
        ("2.bias", True),
    ]
    independent_gd_check(report, select_parameters(model, frozen=["0.*"]), d, tail_steps=100)
    # the width sweep would rebuild the spec with every parameter trainable: skipped
    assert report.width_extrapolation is None


def test_onnx_with_frozen_hidden_initializers_is_certified_rigorously() -> None:
    d = data(10, 2)
    model = load_onnx_model(export(NTKMLP(), (3,)))
    report = certify(model, d, CertifyOptions(budget="fast", trainable=["V", "c"]))
    assert report.verdict == "certified" and report.tier == "rigorous", report.reasons
    assert report.constants.beta_F.upper_bound == 0.0
    independent_gd_check(report, select_parameters(model, trainable=["V", "c"]), d, tail_steps=100)
    listed = {p.name: (p.shape, p.count, p.trainable) for p in report.parameters}
    assert listed == {
        "W": ([16, 3], 48, False),
        "b": ([16], 16, False),
        "V": ([2, 16], 32, True),
        "c": ([2], 2, True),
    }


def test_default_ntk_onnx_report_lists_every_parameter_as_trainable() -> None:
    d = data(4, 2)
    model = load_onnx_model(export(NTKMLP(), (3,)))
    report = certify(model, d, CertifyOptions(budget="fast", validation_steps=5))
    assert {p.name for p in report.parameters if p.trainable} == {"W", "b", "V", "c"}
    assert report.problem.n_params == sum(p.count for p in report.parameters)


def test_certify_refuses_a_pattern_that_matches_nothing() -> None:
    with pytest.raises(OptionsError, match="frozen pattern 'hidden' matches no parameter"):
        certify(load_model(SPEC), data(4, 1), CertifyOptions(frozen=["hidden"]))


def test_exporter_folded_initializers_are_named_in_the_reasons() -> None:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(  # default do_constant_folding=True folds 0.1 * b into onnx::Add_*
            NTKMLP().double().eval(),
            (torch.zeros(2, 3, dtype=torch.float64),),
            buf,  # type: ignore[arg-type]
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "n"}},
        )
    model = load_onnx_model(buf.getvalue())
    report = certify(model, data(4, 2), CertifyOptions(budget="fast", validation_steps=5))
    assert any("look constant-folded by the exporter" in r for r in report.reasons)
    assert any(p.name.startswith("onnx::Add_") for p in report.parameters)


class _SumPoolCNN(torch.nn.Module):
    """SmallCNN with a spatial ReduceSum instead of average pooling (linear, but no bound)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 2)  # m = 18 > N = 12

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).sum(dim=(2, 3)))


def test_affine_model_without_a_running_error_bound_is_refused_the_rigorous_tier() -> None:
    """A CNN with only its last layer trained is affine (beta_F = 0), but the rounding inside its
    spatial ReduceSum has no running-error bound: the rigorous tier is refused, with the reason."""
    g = torch.Generator().manual_seed(5)
    X = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    model = load_onnx_model(export(_SumPoolCNN(), (1, 4, 4)))
    options = CertifyOptions(budget="fast", trainable=["fc.*"], validation_steps=20)
    report = certify(model, dataset(X, y, "cnn-features"), options)
    assert select_parameters(model, trainable=["fc.*"]).affine_in_params
    assert report.tier == "estimated"
    assert any("rigorous tier refused" in r and "Reducesum" in r for r in report.reasons)
    assert not report.initial.lambda_min_lower and report.initial.jacobian_norm_upper is None
    assert "no running-error bound" in report.initial.lower_bound_method


def test_affine_cnn_features_get_the_floating_point_bounds() -> None:
    """SmallCNN (conv, tanh, average pooling) with only its last layer trained: the image chain
    has a running-error bound (estimate.rounding_spatial), so lambda_min from below and ||J||
    from above hold for the exact model and no rigorous-tier refusal is reported."""
    g = torch.Generator().manual_seed(5)
    X = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    model = load_onnx_model(export(SmallCNN(), (1, 4, 4)))
    options = CertifyOptions(budget="fast", trainable=["fc.*"], validation_steps=20)
    report = certify(model, dataset(X, y, "cnn-features"), options)
    assert not any("rigorous tier refused" in r for r in report.reasons)
    assert report.initial.lambda_min_lower and report.initial.lambda_min_lower > 0
    assert report.initial.jacobian_norm_upper is not None
    assert "running-error bound" in report.initial.lower_bound_method
