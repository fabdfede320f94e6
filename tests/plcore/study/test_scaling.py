"""Which layers a width study scales, and the checks of widths, depths and seeds."""

from __future__ import annotations

from typing import Any

import pytest

from plcore.errors import ModelFormatError, ModelSpecError, OptionsError
from plcore.study.scaling import (
    MAX_STUDY_SEEDS,
    MAX_STUDY_VALUES,
    base_width,
    check_seeds,
    check_values,
    spec_at,
    spec_from_json,
)

MLP: dict[str, Any] = {"type": "mlp", "input_dim": 3, "widths": [8, 4], "output_dim": 2}


def _layers(*items: dict[str, Any], shape: tuple[int, ...] = (3,)) -> dict[str, Any]:
    return {"type": "layers", "input_shape": list(shape), "output_dim": 2, "layers": list(items)}


def test_mlp_every_hidden_width_becomes_w_and_the_seed_is_set() -> None:
    spec = spec_at(MLP, width=32, seed=5)
    assert spec["widths"] == [32, 32] and spec["seed"] == 5
    assert (spec["input_dim"], spec["output_dim"]) == (3, 2)
    assert spec_at(MLP, width=16, seed=0, depth=3)["widths"] == [16, 16, 16]


def test_layer_list_scales_hidden_layers_proportionally_but_not_the_output() -> None:
    base = _layers(
        {"type": "linear", "out": 8},
        {"type": "activation", "name": "tanh"},
        {"type": "residual", "layers": [{"type": "linear", "out": 8}]},
        {"type": "linear", "out": 4},
        {"type": "activation", "name": "tanh"},
        {"type": "linear", "out": 2},
    )
    assert base_width(base) == 8
    spec = spec_at(base, width=32, seed=1)
    outs = [it.get("out") for it in spec["layers"] if it["type"] == "linear"]
    assert outs == [32, 16, 2]
    assert spec["layers"][2]["layers"][0]["out"] == 32  # the residual block keeps its shape


def test_conv_channels_scale() -> None:
    base = _layers(
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "activation", "name": "tanh"},
        {"type": "global_avgpool"},
        {"type": "linear", "out": 2},
        shape=(1, 4, 4),
    )
    assert spec_at(base, width=12, seed=0)["layers"][0]["out_channels"] == 12


@pytest.mark.parametrize(
    "spec",
    [
        {**MLP, "widths": []},
        _layers({"type": "linear", "out": 2}),
        _layers({"type": "activation", "name": "tanh"}, {"type": "linear", "out": 2}),
    ],
    ids=["mlp-without-hidden-layer", "single-linear", "activation-then-output"],
)
def test_a_spec_without_hidden_width_is_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ModelSpecError, match="no width to scale"):
        base_width(spec)


def test_a_residual_block_on_the_unscaled_input_no_longer_fits_and_says_where() -> None:
    base = _layers(
        {"type": "residual", "layers": [{"type": "linear", "out": 3}]}, {"type": "linear", "out": 2}
    )
    with pytest.raises(ModelSpecError, match="at width 6"):
        spec_at(base, width=6, seed=0)


def test_depth_needs_the_mlp_shorthand() -> None:
    base = _layers({"type": "linear", "out": 8}, {"type": "linear", "out": 2})
    with pytest.raises(ModelSpecError, match="MLP shorthand"):
        spec_at(base, width=8, seed=0, depth=2)


def test_a_width_over_the_parameter_cap_is_refused_with_the_width() -> None:
    with pytest.raises(ModelSpecError, match=r"at width 100000.*parameters"):
        spec_at({**MLP, "widths": [8, 8, 8]}, width=100_000, seed=0)


def test_values_are_sorted_and_deduplicated() -> None:
    assert check_values([256, 64, 64], "widths", 1000) == [64, 256]


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([], "must not be empty"),
        ([64, -8], r"integers from 1 to 1000, got \[-8\]"),
        ([0], "got \\[0\\]"),
        ([2000], "got \\[2000\\]"),
        ([True], "got \\[True\\]"),
        (list(range(1, MAX_STUDY_VALUES + 2)), f"at most {MAX_STUDY_VALUES} widths"),
    ],
    ids=["empty", "negative", "zero", "too-large", "bool", "too-many"],
)
def test_bad_widths_are_refused(values: list[Any], match: str) -> None:
    with pytest.raises(OptionsError, match=match):
        check_values(values, "widths", 1000)


def test_seeds_keep_their_order_and_bad_ones_are_refused() -> None:
    assert check_seeds([3, 1, 3]) == [3, 1]
    with pytest.raises(OptionsError, match="must not be empty"):
        check_seeds([])
    with pytest.raises(OptionsError, match="got \\[-1\\]"):
        check_seeds([0, -1])
    with pytest.raises(OptionsError, match=f"at most {MAX_STUDY_SEEDS} seeds"):
        check_seeds(list(range(MAX_STUDY_SEEDS + 1)))


def test_spec_from_json_refuses_onnx_bytes_duplicate_keys_and_non_objects() -> None:
    assert spec_from_json(b'{"type": "mlp"}') == {"type": "mlp"}
    with pytest.raises(ModelFormatError, match="needs a JSON model spec"):
        spec_from_json(b"\x08\x07\x12\x04onnx")
    with pytest.raises(ModelFormatError, match="needs a JSON model spec"):
        spec_from_json(b'{"type": "mlp", "type": "layers"}')
    with pytest.raises(ModelSpecError, match="JSON object, got list"):
        spec_from_json(b"[1, 2]")
