"""trainable / frozen selection, the parameter list, and that every consumer honours it."""

from __future__ import annotations

import pydantic
import pytest
import torch
from torch.func import functional_call, jacrev

from plcore.errors import OptionsError
from plcore.hessian import hessian_tensor_norm
from plcore.kernel import tangent_kernel
from plcore.models.loader import load_model
from plcore.models.onnx_import import load_onnx_model
from plcore.models.params import parameter_table, public_names, select_parameters
from plcore.options import CertifyOptions
from tests.plcore.models.torch_oracles import NTKMLP, export

SPEC = {
    "type": "mlp",
    "input_dim": 3,
    "widths": [8],
    "output_dim": 2,
    "activation": "tanh",
    "parameterization": "ntk",
    "seed": 0,
}


def test_spec_parameters_are_listed_by_module_name_all_trainable() -> None:
    model = load_model(SPEC)
    table = parameter_table(model)
    assert [(p.name, p.shape, p.count, p.trainable) for p in table] == [
        ("0.weight", (8, 3), 24, True),
        ("0.bias", (8,), 8, True),
        ("2.weight", (2, 8), 16, True),
        ("2.bias", (2,), 2, True),
    ]


def test_frozen_glob_freezes_on_a_copy() -> None:
    model = load_model(SPEC)
    frozen = select_parameters(model, frozen=["0.*"])
    assert frozen.n_params == 18 and model.n_params == 50
    assert list(frozen.named_params()) == ["2.weight", "2.bias"]
    assert [p.trainable for p in parameter_table(frozen)] == [False, False, True, True]
    assert load_model(SPEC, frozen=["0.*"]).n_params == 18


def test_trainable_replaces_the_default_and_frozen_applies_after_it() -> None:
    model = load_model(SPEC)
    chosen = select_parameters(model, trainable=["*.weight"], frozen=["0.weight"])
    assert list(chosen.named_params()) == ["2.weight"]


def test_onnx_patterns_name_initializers() -> None:
    model = load_onnx_model(export(NTKMLP(), (3,)))
    assert sorted(public_names(model).values()) == ["V", "W", "b", "c"]
    head = select_parameters(model, trainable=["V", "c"])
    assert head.n_params == 2 * 16 + 2


def test_pattern_that_matches_nothing_is_an_options_error() -> None:
    with pytest.raises(OptionsError, match=r"frozen pattern 'layer9\.\*' matches no parameter"):
        select_parameters(load_model(SPEC), frozen=["layer9.*"])
    with pytest.raises(OptionsError, match="trainable pattern 'nope' matches no parameter"):
        load_model(SPEC, trainable=["nope"])


def test_freezing_everything_is_an_options_error() -> None:
    with pytest.raises(OptionsError, match="no parameter is left to train"):
        select_parameters(load_model(SPEC), frozen=["*"])


def test_empty_pattern_is_rejected_by_the_options() -> None:
    with pytest.raises(pydantic.ValidationError, match="parameter patterns must be non-empty"):
        CertifyOptions(frozen=[" "])


def test_kernel_of_a_frozen_model_is_the_trainable_block_of_the_full_jacobian() -> None:
    model = load_model(SPEC)
    X = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    params = {k: v.detach() for k, v in model.module.named_parameters()}
    J = jacrev(lambda p: functional_call(model.module, {**params, **p}, (X,)).reshape(-1))(
        {k: params[k] for k in ("2.weight", "2.bias")}
    )
    Jf = torch.cat([j.reshape(10, -1) for j in J.values()], dim=1)
    head = select_parameters(model, frozen=["0.*"])
    for method in ("reference", "structured"):
        torch.testing.assert_close(tangent_kernel(head, X, method), Jf @ Jf.T, rtol=1e-12, atol=0)


def test_hessian_of_a_last_layer_model_vanishes() -> None:
    head = select_parameters(load_model(SPEC), frozen=["0.*"])
    X = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert (
        float(hessian_tensor_norm(head, X, generator=torch.Generator().manual_seed(0)).value) == 0.0
    )
