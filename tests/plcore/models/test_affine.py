"""The structural check that F is affine in the trainable parameters, against dense Hessians."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, hessian

from plcore.models.loader import load_model
from plcore.models.onnx_import import load_onnx_model
from plcore.models.params import select_parameters
from tests.plcore.models.test_onnx_parameterization import fd_case
from tests.plcore.models.torch_oracles import NTKMLP, export

SPEC = {
    "type": "mlp",
    "input_dim": 3,
    "widths": [6, 6],
    "output_dim": 2,
    "activation": "tanh",
    "parameterization": "ntk",
    "seed": 0,
}


def dense_hessian_norm(module: torch.nn.Module, names: list[str]) -> float:
    """max |d^2 f / dw dw'| over the trainable ``names`` by torch.func.hessian (dense autograd)."""
    X = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    own = {k: v.detach() for k, v in module.named_parameters()}
    H = hessian(lambda p: functional_call(module, {**own, **p}, (X,)).reshape(-1))(
        {k: own[k] for k in names}
    )
    return max(float(h.abs().max()) for row in H.values() for h in row.values())


@pytest.mark.parametrize(
    ("trainable", "affine"),
    [
        (["2.*"], False),  # the middle layer feeds a tanh
        (["4.*"], True),  # last layer: linear in (W, b) given fixed features
        (["4.bias"], True),
        (["0.bias", "4.weight"], False),
        (["*"], False),
    ],
)
def test_spec_mlp_affine_iff_only_the_last_layer_trains(trainable: list[str], affine: bool) -> None:
    model = load_model(SPEC, trainable=trainable)
    assert model.affine_in_params is affine
    names = list(model.named_params())
    assert (dense_hessian_norm(model.module, names) == 0.0) is affine


@pytest.mark.parametrize(("trainable", "affine"), [(["V", "c"], True), (["W", "V"], False)])
def test_onnx_mlp_affine_in_the_head(trainable: list[str], affine: bool) -> None:
    module = NTKMLP()
    model = load_onnx_model(export(module, (3,)))
    assert select_parameters(model, trainable=trainable).affine_in_params is affine
    assert (dense_hessian_norm(module.double(), trainable) == 0.0) is affine


def test_general_path_parameters_are_tracked() -> None:
    data, _ = fd_case("two_initializers_combined")  # x (A + 0.5 B) then Gemm(V, c)
    model = load_onnx_model(data)
    assert select_parameters(model, trainable=["A", "B"]).affine_in_params
    assert select_parameters(model, trainable=["V", "c"]).affine_in_params
    assert not model.affine_in_params  # (A, V) multiply each other
    tied, _ = fd_case("tied")
    assert not load_onnx_model(tied).affine_in_params
