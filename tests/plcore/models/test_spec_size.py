"""Parameter counts from a JSON spec or an ONNX graph, without building: checked against the
parameters of the built model (``model.n_params``, a sum over the module's tensors)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plcore import load_model
from plcore.models.onnx_size import onnx_param_count
from plcore.models.spec_size import spec_param_count, spec_size, validate_spec_for_size
from tests.plcore.models.onnx_zoo import zoo
from tests.plcore.models.spec_zoo import spec_zoo

LAYER_SPECS: list[dict[str, Any]] = [
    {
        "type": "layers",
        "input_shape": [2, 9, 7],
        "output_dim": 3,
        "layers": [
            {"type": "conv2d", "out_channels": 4, "kernel_size": [3, 2], "stride": 2, "padding": 1},
            {"type": "activation", "name": "tanh"},
            {
                "type": "residual",
                "layers": [{"type": "layernorm"}, {"type": "activation", "name": "sin"}],
            },
            {"type": "avgpool2d", "kernel_size": 2, "stride": 1},
            {"type": "conv2d", "out_channels": 3, "kernel_size": 1, "bias": False},
            {"type": "layernorm", "elementwise_affine": False},
            {"type": "flatten"},
            {"type": "linear", "out": 5},
            {"type": "layernorm"},
            {"type": "linear", "out": 3, "bias": False},
        ],
    },
    {"type": "mlp", "input_dim": 5, "widths": [7, 3], "output_dim": 2, "bias": False},
    {"type": "mlp", "input_dim": 5, "widths": [], "output_dim": 4},
]


@pytest.mark.parametrize(
    "spec",
    [s for _, s, _ in spec_zoo()] + LAYER_SPECS,
    ids=[n for n, _, _ in spec_zoo()] + ["layers_mix", "mlp_no_bias", "linear"],
)
def test_spec_count_equals_the_built_models_parameters(spec: dict[str, Any]) -> None:
    model = load_model(spec)
    built = sum(p.numel() for p in model.module.parameters())
    assert model.n_params == built
    size = spec_size(json.dumps(spec).encode())
    assert size is not None
    assert size.n_params == built
    assert size.output_dim == spec["output_dim"]


def test_a_spec_over_the_schema_cap_is_counted_not_built() -> None:
    spec = {"type": "mlp", "input_dim": 8, "widths": [10**6, 10**6], "output_dim": 1}
    assert spec_param_count(validate_spec_for_size(spec)) == 8 * 10**6 + 10**12 + 3 * 10**6 + 1
    conv = {
        "type": "layers",
        "input_shape": [3, 8, 8],
        "output_dim": 1,
        "layers": [
            {"type": "conv2d", "out_channels": 100_000, "kernel_size": 3},
            {"type": "conv2d", "out_channels": 100_000, "kernel_size": 1},
            {"type": "global_avgpool"},
            {"type": "linear", "out": 1},
        ],
    }
    size = spec_size(conv)
    assert size is not None and size.n_params == 2_800_000 + 10**10 + 100_000 + 100_001


@pytest.mark.parametrize(
    "source",
    [b"not json", b"[1, 2]", {"type": "mlp", "input_dim": 0, "widths": [], "output_dim": 1}],
)
def test_a_malformed_spec_has_no_size(source: Any) -> None:
    assert spec_size(source) is None


@pytest.mark.parametrize("item", zoo(), ids=lambda z: z.name)
def test_onnx_count_equals_the_imported_models_trainable_parameters(item: Any) -> None:
    model = load_model(item.onnx_bytes, format="onnx")
    assert onnx_param_count(item.onnx_bytes) == model.n_params


def test_unparseable_onnx_has_no_size() -> None:
    assert onnx_param_count(b"\xff\xff\xff not a protobuf") is None
