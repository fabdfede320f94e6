"""JSON model specs: initialisation, forward formulas, the zoo, and every validation error."""

from __future__ import annotations

import hashlib
import json
import math
import typing
from typing import Any

import pytest
import torch
from torch import nn

from plcore.errors import ModelSpecError
from plcore.models.layers import ACTIVATIONS, PARAMETERIZED_LAYERS, Activation, Dense
from plcore.models.loader import load_model
from plcore.models.spec import (
    MAX_LAYERS,
    ActivationName,
    ModelSpec,
    canonical_json,
    load_spec_model,
    parameter_names,
    parameter_shapes,
    validate_spec,
    with_widths,
)
from plcore.models.spec_build import GlobalAvgPool, LayerNorm, Residual
from tests.plcore.models.spec_zoo import spec_zoo

F64 = torch.float64


def mlp(**kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "mlp", "input_dim": 3, "widths": [4], "output_dim": 2}
    spec.update(kw)
    return spec


def dense_layers(module: nn.Module) -> list[Dense]:
    return [m for m in module.modules() if isinstance(m, Dense)]


# --- initialisation -------------------------------------------------------------------------


def test_ntk_weights_are_standard_normal_entries() -> None:
    model = load_spec_model(mlp(input_dim=400, widths=[], output_dim=500, seed=7))
    (layer,) = dense_layers(model.module)
    W = layer.weight.detach()
    assert W.shape == (500, 400)
    # 200 000 N(0,1) draws: the standard error of the mean is 0.0022, of the std 0.0016.
    assert abs(W.mean().item()) < 0.01
    assert abs(W.std().item() - 1.0) < 0.01
    assert layer.weight_scale == pytest.approx(1.0 / math.sqrt(400))
    assert layer.bias_scale == pytest.approx(0.1)


def test_ntk_forward_equals_the_explicit_formula() -> None:
    spec = mlp(weight_std=1.3, bias_std=0.2, activation="tanh", seed=3)
    model = load_spec_model(spec)
    p = model.named_params()
    X = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    h = torch.tanh((1.3 / math.sqrt(3)) * X @ p["0.weight"].T + 0.2 * p["0.bias"])
    expected = (1.3 / math.sqrt(4)) * h @ p["2.weight"].T + 0.2 * p["2.bias"]
    torch.testing.assert_close(model.module(X), expected, rtol=1e-14, atol=1e-14)


def test_ntk_draw_order_is_weight_then_bias_layer_by_layer() -> None:
    model = load_spec_model(mlp(seed=11))
    g = torch.Generator().manual_seed(11)
    expected = {
        "0.weight": torch.randn(4, 3, generator=g, dtype=F64),
        "0.bias": torch.randn(4, generator=g, dtype=F64),
        "2.weight": torch.randn(2, 4, generator=g, dtype=F64),
        "2.bias": torch.randn(2, generator=g, dtype=F64),
    }
    got = model.named_params()
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert torch.equal(got[name], value), name


def test_standard_init_matches_torch_linear_bounds() -> None:
    fan_in, fan_out = 50, 400
    model = load_spec_model(
        mlp(input_dim=fan_in, widths=[], output_dim=fan_out, parameterization="standard")
    )
    (layer,) = dense_layers(model.module)
    W, b = layer.weight.detach(), layer.bias.detach()  # type: ignore[union-attr]
    reference = nn.Linear(fan_in, fan_out, dtype=F64)  # PyTorch's own default initialisation
    bound = 1.0 / math.sqrt(fan_in)
    assert reference.weight.abs().max().item() <= bound
    assert reference.weight.abs().max().item() > 0.95 * bound
    assert W.abs().max().item() <= bound
    assert W.abs().max().item() > 0.99 * bound
    assert b.abs().max().item() <= bound
    # U(-a, a) has variance a^2 / 3; 20 000 draws give the std to about 0.5 %.
    assert W.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert W.std().item() == pytest.approx(reference.weight.std().item(), rel=0.03)
    assert abs(W.mean().item()) < 0.01 * bound * 3
    assert (layer.weight_scale, layer.bias_scale) == (1.0, 1.0)


def test_standard_forward_is_a_plain_affine_map() -> None:
    model = load_spec_model(mlp(parameterization="standard", activation="sin", seed=2))
    p = model.named_params()
    X = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    h = torch.sin(X @ p["0.weight"].T + p["0.bias"])
    torch.testing.assert_close(model.module(X), h @ p["2.weight"].T + p["2.bias"])


def test_same_seed_gives_same_weights_and_other_seed_differs() -> None:
    a = load_spec_model(mlp(seed=5)).flat_params()
    b = load_spec_model(mlp(seed=5)).flat_params()
    c = load_spec_model(mlp(seed=6)).flat_params()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_bias_false_builds_dense_layers_without_bias() -> None:
    model = load_spec_model(mlp(bias=False))
    assert parameter_names(mlp(bias=False)) == ["0.weight", "2.weight"]
    assert model.n_params == 3 * 4 + 4 * 2


def test_activation_names_in_the_schema_are_exactly_the_layer_activations() -> None:
    assert set(typing.get_args(ActivationName)) == set(ACTIVATIONS)


_TORCH_ACTIVATIONS = {
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "sigmoid": torch.sigmoid,
    "softplus": nn.functional.softplus,
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,
    "sin": torch.sin,
    "relu": torch.relu,
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_is_applied_between_dense_layers(name: str) -> None:
    model = load_spec_model(mlp(activation=name, output_activation=name, seed=1))
    assert isinstance(model.module, nn.Sequential)
    kinds = [type(m) for m in model.module]
    assert kinds == [Dense, Activation, Dense, Activation]
    p = model.named_params()
    phi = _TORCH_ACTIVATIONS[name]
    X = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    h = phi((1 / math.sqrt(3)) * X @ p["0.weight"].T + 0.1 * p["0.bias"])
    expected = phi((1 / math.sqrt(4)) * h @ p["2.weight"].T + 0.1 * p["2.bias"])
    torch.testing.assert_close(model.module(X), expected, rtol=1e-13, atol=1e-14)
    assert model.smooth == (name != "relu")
    assert model.nonsmooth_ops == (("relu",) if name == "relu" else ())


# --- the zoo ------------------------------------------------------------------------------

EXPECTED_PARAMS = {
    "mlp_ntk_tanh": (3 * 8 + 8) + (8 * 8 + 8) + (8 + 1),
    "mlp_standard_gelu": (4 * 10 + 10) + (10 * 2 + 2),
    "mlp_sigmoid_output": (3 * 6 + 6) + (6 + 1),
    "linear": 5 + 1,
    "mlp_erf_multi_output": (4 * 7 + 7) + (7 * 5 + 5) + (5 * 3 + 3),
    # conv 1->3 k3: 27 + 3; pool -> (3, 3, 3) = 27 features; linear 27 + 1
    "cnn_tanh": (1 * 3 * 9 + 3) + (27 + 1),
    # linear 4->6; layernorm gamma, beta (6 each); linear 6->6; linear 6->2
    "residual_layernorm": (4 * 6 + 6) + 12 + (36 + 6) + (12 + 2),
    # conv 2->4 k3; conv 4->4 k3; layernorm over (4, 5, 5) twice; linear 4->2
    "cnn_residual_global_pool": (2 * 4 * 9 + 4) + (4 * 4 * 9 + 4) + 2 * 100 + (8 + 2),
    "mlp_relu": (3 * 5 + 5) + (5 + 1),
}


def test_zoo_has_every_required_kind_of_model() -> None:
    names = [name for name, _, _ in spec_zoo()]
    assert len(names) >= 6
    assert set(names) == set(EXPECTED_PARAMS)


@pytest.mark.parametrize(("name", "spec", "input_shape"), spec_zoo(), ids=lambda v: str(v)[:30])
def test_zoo_model_builds_with_expected_shapes_and_parameter_count(
    name: str, spec: dict[str, Any], input_shape: tuple[int, ...]
) -> None:
    model = load_spec_model(spec)
    assert model.n_params == EXPECTED_PARAMS[name]
    assert model.input_shape == input_shape
    assert not model.module.training
    X = torch.randn(3, *input_shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    out = model.module(X)
    assert out.shape == (3, model.output_dim)
    assert out.dtype == F64
    assert torch.isfinite(out).all()
    allowed = (*PARAMETERIZED_LAYERS, Activation, Residual, LayerNorm, GlobalAvgPool)
    allowed_free = (nn.Sequential, nn.Flatten, nn.AvgPool2d)
    for module in model.module.modules():
        assert isinstance(module, allowed + allowed_free), type(module)
        if not isinstance(module, allowed):
            assert not list(module.parameters(recurse=False))
    assert all(p.dtype == F64 for p in model.module.parameters())
    assert list(model.named_params()) == parameter_names(spec)


def test_layers_model_forward_matches_hand_written_torch() -> None:
    _, spec, _ = next(z for z in spec_zoo() if z[0] == "residual_layernorm")
    model = load_spec_model(spec)
    p = model.named_params()
    X = torch.randn(4, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    h = torch.tanh((1 / 2) * X @ p["0.weight"].T + 0.1 * p["0.bias"])
    z = nn.functional.layer_norm(h, (6,), eps=1e-5)
    z = z * p["2.block.0.scale.weight"] + p["2.block.0.shift.bias"]
    z = nn.functional.silu(
        (1 / math.sqrt(6)) * z @ p["2.block.1.weight"].T + 0.1 * p["2.block.1.bias"]
    )
    h = h + z
    expected = (1 / math.sqrt(6)) * h @ p["3.weight"].T + 0.1 * p["3.bias"]
    torch.testing.assert_close(model.module(X), expected, rtol=1e-12, atol=1e-13)


def test_conv_uses_ntk_scaling_with_fan_in_c_kh_kw() -> None:
    _, spec, _ = next(z for z in spec_zoo() if z[0] == "cnn_tanh")
    model = load_spec_model(spec)
    p = model.named_params()
    X = torch.randn(2, 1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(4))
    h = nn.functional.conv2d(X, p["0.weight"], padding=1) / math.sqrt(1 * 3 * 3)
    h = torch.tanh(h + 0.1 * p["0.bias"].reshape(1, -1, 1, 1))
    h = nn.functional.avg_pool2d(h, 2).flatten(1)
    expected = h @ p["4.weight"].T / math.sqrt(27) + 0.1 * p["4.bias"]
    torch.testing.assert_close(model.module(X), expected, rtol=1e-12, atol=1e-13)


def test_image_layernorm_normalises_over_channels_and_pixels() -> None:
    _, spec, _ = next(z for z in spec_zoo() if z[0] == "cnn_residual_global_pool")
    model = load_spec_model(spec)
    residual = model.module.get_submodule("2")
    assert isinstance(residual, Residual)
    norm = residual.block[1]
    assert isinstance(norm, LayerNorm)
    x = torch.randn(3, 4, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(norm(x), nn.functional.layer_norm(x, (4, 5, 5), eps=1e-5))


# --- model metadata ---------------------------------------------------------------------------


def test_model_fields_describe_the_mlp() -> None:
    spec = mlp(input_dim=8, widths=[512, 512], output_dim=1, output_activation="sigmoid")
    model = load_spec_model(spec)
    assert model.description == "MLP 8-512-512-1 tanh, output sigmoid (ntk)"
    assert model.input_shape == (8,)
    assert model.output_dim == 1
    assert model.format == "json"
    assert model.activations == ("tanh", "sigmoid")
    assert model.output_activation == "sigmoid"
    assert model.smooth
    assert model.spec is not None and model.spec["bias_std"] == 0.1
    canonical = json.dumps(model.spec, sort_keys=True, separators=(",", ":")).encode()
    assert model.sha256 == hashlib.sha256(canonical).hexdigest()


def test_layers_model_description_names_layers_and_activations() -> None:
    _, spec, _ = next(z for z in spec_zoo() if z[0] == "cnn_tanh")
    model = load_spec_model(spec)
    assert model.description == "layers 1x6x6 conv2d-tanh-avgpool2d-flatten-linear -> 1 (ntk)"
    assert model.activations == ("tanh",)
    assert model.output_activation is None
    assert model.input_shape == (1, 6, 6)


def test_linear_model_description_and_no_activations() -> None:
    model = load_spec_model(mlp(widths=[], activation="relu"))
    assert model.description == "MLP 3-2 linear (ntk)"
    assert model.activations == ()
    assert model.smooth


def test_sha256_is_the_same_for_equivalent_specs() -> None:
    a = {"type": "mlp", "input_dim": 3, "widths": [4], "output_dim": 1}
    b = {"output_dim": 1, "widths": [4], "bias_std": 0.1, "input_dim": 3, "type": "mlp"}
    assert load_spec_model(a).sha256 == load_spec_model(b).sha256
    assert load_spec_model(a).sha256 != load_spec_model({**a, "seed": 1}).sha256
    conv = {"type": "conv2d", "out_channels": 2, "kernel_size": 3}
    tail = [{"type": "flatten"}, {"type": "linear", "out": 1}]
    c = {"type": "layers", "input_shape": [1, 4, 4], "output_dim": 1, "layers": [conv, *tail]}
    d = json.loads(json.dumps(c))
    d["layers"][0]["kernel_size"] = [3, 3]
    assert canonical_json(validate_spec(c)) == canonical_json(validate_spec(d))


def test_load_model_reads_json_bytes_through_the_public_loader() -> None:
    model = load_model(json.dumps(mlp()).encode())
    assert model.n_params == 3 * 4 + 4 + 4 * 2 + 2


def test_model_spec_json_schema_has_both_forms_for_openapi() -> None:
    schema = ModelSpec.model_json_schema()
    assert {"MLPSpec", "LayersSpec", "ResidualLayer"} <= set(schema["$defs"])
    assert schema["discriminator"]["propertyName"] == "type"


def test_parameter_shapes_lists_names_in_module_order() -> None:
    _, spec, _ = next(z for z in spec_zoo() if z[0] == "residual_layernorm")
    assert parameter_shapes(spec) == {
        "0.weight": (6, 4),
        "0.bias": (6,),
        "2.block.0.scale.weight": (6,),
        "2.block.0.shift.bias": (6,),
        "2.block.1.weight": (6, 6),
        "2.block.1.bias": (6,),
        "3.weight": (2, 6),
        "3.bias": (2,),
    }


def test_with_widths_keeps_everything_but_the_widths() -> None:
    spec = mlp(activation="erf", seed=9, weight_std=2.0)
    wide = with_widths(spec, [64, 32])
    assert wide["widths"] == [64, 32]
    assert {k: v for k, v in wide.items() if k != "widths"} == {
        k: v for k, v in validate_spec(spec).model_dump(mode="json").items() if k != "widths"
    }
    assert load_spec_model(wide).n_params == 3 * 64 + 64 + 64 * 32 + 32 + 32 * 2 + 2


def test_with_widths_rejects_bad_widths_and_layer_specs() -> None:
    with pytest.raises(ModelSpecError, match=r"widths\.0: Input should be greater than or equal"):
        with_widths(mlp(), [0])
    _, layers_spec, _ = spec_zoo()[5]
    with pytest.raises(ModelSpecError, match="with_widths needs an 'mlp' spec, got type 'layers'"):
        with_widths(layers_spec, [4])


# --- validation errors -------------------------------------------------------------------------

LAYERS_BASE: dict[str, Any] = {"type": "layers", "input_shape": [4], "output_dim": 2}


def _layers(*layers: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {**LAYERS_BASE, "layers": list(layers), **kw}


BAD_SPECS = [
    (
        "unknown_activation",
        mlp(activation="swish"),
        r"^model spec invalid: activation: Input should be 'identity', 'tanh', 'erf', 'sigmoid', "
        r"'softplus', 'gelu', 'silu', 'sin' or 'relu' \(got 'swish'\)$",
    ),
    (
        "negative_width",
        mlp(widths=[4, -3]),
        r"^model spec invalid: widths\.1: Input should be greater than or equal to 1 \(got -3\)$",
    ),
    ("zero_input_dim", mlp(input_dim=0), r"input_dim: Input should be greater than or equal to 1"),
    ("extra_key", mlp(depth=3), r"^model spec invalid: depth: Extra inputs are not permitted"),
    ("missing_field", {"type": "mlp", "widths": []}, r"input_dim: Field required; output_dim"),
    ("unknown_type", {"type": "rnn"}, r"Input tag 'rnn' found using 'type' does not match"),
    ("no_type", {"input_dim": 3}, r"Unable to extract tag using discriminator 'type'"),
    ("bad_parameterization", mlp(parameterization="mup"), r"parameterization: Input should be"),
    ("negative_bias_std", mlp(bias_std=-0.1), r"bias_std: Input should be greater than or equal"),
    ("nan_weight_std", mlp(weight_std=float("nan")), r"weight_std: Input should be a finite"),
    (
        "standard_with_scales",
        mlp(parameterization="standard", weight_std=2.0),
        r"weight_std \(2\.0\) and bias_std \(0\.1\) apply to parameterization 'ntk' only",
    ),
    (
        "too_many_layers",
        mlp(widths=[2] * MAX_LAYERS),
        r"widths: List should have at most 63 items after validation, not 64",
    ),
    (
        "too_many_params",
        mlp(input_dim=10_000, widths=[5_001], output_dim=1),
        r"the model has 50,020,003 parameters, over the limit of 50,000,000",
    ),
    (
        "residual_shape_mismatch",
        _layers(
            {"type": "linear", "out": 6},
            {"type": "residual", "layers": [{"type": "linear", "out": 5}]},
            {"type": "linear", "out": 2},
        ),
        r"^model spec invalid: layer layers\.1 \(residual\): the block maps per-sample \(6,\) to "
        r"\(5,\); x \+ block\(x\) needs the same shape$",
    ),
    (
        "wrong_output_shape",
        _layers({"type": "linear", "out": 3}),
        r"the layers end at per-sample shape \(3,\) \(after layer layers\.0, linear\), but "
        r"output_dim is 2",
    ),
    (
        "linear_on_image",
        _layers({"type": "linear", "out": 2}, input_shape=[1, 4, 4]),
        r"layer layers\.0 \(linear\) needs a flat input \(d,\), got per-sample \(1, 4, 4\); "
        r"add a flatten or global_avgpool layer first",
    ),
    (
        "conv_on_flat",
        _layers({"type": "conv2d", "out_channels": 2, "kernel_size": 1}),
        r"layer layers\.0 \(conv2d\) needs an image input \(C, H, W\), got per-sample \(4,\)",
    ),
    (
        "kernel_too_big",
        _layers(
            {"type": "conv2d", "out_channels": 2, "kernel_size": 5},
            {"type": "flatten"},
            {"type": "linear", "out": 2},
            input_shape=[1, 4, 4],
        ),
        r"layer layers\.0 \(conv2d\): kernel \(5, 5\) with padding \(0, 0\) does not fit "
        r"per-sample input \(1, 4, 4\)",
    ),
    (
        "nested_bad_field",
        _layers({"type": "residual", "layers": [{"type": "linear", "out": 0}]}),
        r"^model spec invalid: layers\.0\.layers\.0\.out: Input should be greater than or equal "
        r"to 1 \(got 0\)$",
    ),
    (
        "input_too_large",
        _layers({"type": "flatten"}, input_shape=[1000, 1000, 1000]),
        r"input_shape \[1000, 1000, 1000\] has 1,000,000,000 values per sample, over the limit",
    ),
    ("bad_input_shape", _layers({"type": "flatten"}, input_shape=[2, 2]), r"\[d\] or \[C, H, W\]"),
    (
        "no_parameters",
        _layers({"type": "activation", "name": "tanh"}, input_shape=[2]),
        r"the model has no trainable parameters",
    ),
    (
        "too_many_nested_layers",
        _layers(*[{"type": "activation", "name": "tanh"}] * 64, {"type": "linear", "out": 2}),
        r"the spec has 65 layers, over the limit of 64",
    ),
]


@pytest.mark.parametrize(("name", "spec", "pattern"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_raises_model_spec_error_naming_the_problem(
    name: str, spec: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(ModelSpecError, match=pattern):
        load_spec_model(spec)


def test_spec_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(ModelSpecError, match="model spec must be a JSON object, got list"):
        load_spec_model([1, 2])  # type: ignore[arg-type]


def test_model_spec_works_as_a_field_of_an_api_body() -> None:
    from pydantic import BaseModel, ValidationError

    class Body(BaseModel):
        model_spec: ModelSpec

    body = Body.model_validate({"model_spec": mlp()})
    assert validate_spec(body.model_spec).type == "mlp"
    assert load_spec_model(body.model_spec).n_params == 26
    with pytest.raises(ValidationError, match=r"widths\.0"):
        Body.model_validate({"model_spec": mlp(widths=[0])})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"input_dim": "8"}, r"input_dim: Input should be a valid integer \(got '8'\)"),
        ({"widths": [True]}, r"widths\.0: Input should be a valid integer \(got True\)"),
        ({"seed": 1.5}, r"seed: Input should be a valid integer \(got 1\.5\)"),
    ],
)
def test_integers_are_not_coerced_from_strings_booleans_or_fractions(
    override: dict[str, object], message: str
) -> None:
    spec = {"type": "mlp", "input_dim": 8, "widths": [4], "output_dim": 1, **override}
    with pytest.raises(ModelSpecError, match=message):
        load_spec_model(spec)
