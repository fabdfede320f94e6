"""Explicit weights for JSON specs: safetensors / npz round trips and every refusal."""

from __future__ import annotations

import io
import pickle
import zipfile
from typing import Any

import numpy as np
import pytest
import torch
from numpy.lib import format as npy_format
from safetensors.torch import save as safetensors_save

from plcore.errors import ModelSpecError
from plcore.models.spec import load_spec_model, parameter_shapes
from plcore.models.weights import sniff_weights_format
from tests.plcore.models.spec_zoo import spec_zoo

SPEC: dict[str, Any] = {"type": "mlp", "input_dim": 3, "widths": [4], "output_dim": 2, "seed": 0}


def npz_bytes(arrays: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def reference_params(seed: int = 1) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_spec_model({**SPEC, "seed": seed}).named_params().items()}


def test_safetensors_weights_replace_the_seeded_initialisation() -> None:
    ref = reference_params()
    model = load_spec_model(SPEC, weights=safetensors_save(ref))
    for name, value in model.named_params().items():
        assert torch.equal(value, ref[name]), name
    assert model.metadata["weights_format"] == "safetensors"
    assert model.sha256 != load_spec_model(SPEC).sha256


def test_npz_weights_round_trip_and_convert_float32_to_float64() -> None:
    ref = {k: v.numpy().astype(np.float32) for k, v in reference_params().items()}
    model = load_spec_model(SPEC, weights=npz_bytes(ref))
    for name, value in model.named_params().items():
        assert value.dtype == torch.float64
        np.testing.assert_array_equal(value.numpy(), ref[name].astype(np.float64))
    assert model.metadata["weights_format"] == "npz"


@pytest.mark.parametrize(("name", "spec", "input_shape"), spec_zoo(), ids=lambda v: str(v)[:30])
def test_every_zoo_model_round_trips_its_own_weights(
    name: str, spec: dict[str, Any], input_shape: tuple[int, ...]
) -> None:
    original = load_spec_model(spec)
    other = load_spec_model(
        {**spec, "seed": spec["seed"] + 100},
        weights=safetensors_save({k: v.contiguous() for k, v in original.named_params().items()}),
    )
    X = torch.randn(
        2, *input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(other.module(X), original.module(X), rtol=0, atol=0)


def test_sniffing_tells_npz_from_safetensors() -> None:
    assert sniff_weights_format(npz_bytes({"a": np.zeros(2)})) == "npz"
    assert sniff_weights_format(safetensors_save({"a": torch.zeros(2)})) == "safetensors"


def test_missing_and_extra_keys_are_listed() -> None:
    ref = reference_params()
    del ref["2.bias"]
    ref["3.weight"] = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(
        ModelSpecError,
        match=r"weights do not match the model \(missing keys \['2\.bias'\], unexpected keys "
        r"\['3\.weight'\]\); expected keys and shapes: 0\.weight \(4, 3\), 0\.bias \(4,\), "
        r"2\.weight \(2, 4\), 2\.bias \(2,\)",
    ):
        load_spec_model(SPEC, weights=safetensors_save(ref))


def test_wrong_shape_is_named_with_both_shapes() -> None:
    ref = {k: v.numpy() for k, v in reference_params().items()}
    ref["0.weight"] = np.zeros((3, 4))
    with pytest.raises(
        ModelSpecError, match=r"wrong shapes \[0\.weight: expected \(4, 3\), got \(3, 4\)\]"
    ):
        load_spec_model(SPEC, weights=npz_bytes(ref))


def test_non_finite_weights_are_rejected() -> None:
    ref = reference_params()
    ref["0.bias"][1] = float("nan")
    ref["0.bias"][2] = float("inf")
    with pytest.raises(ModelSpecError, match=r"weight '0\.bias' has 2 non-finite values"):
        load_spec_model(SPEC, weights=safetensors_save(ref))


def test_npz_with_pickled_object_array_is_rejected() -> None:
    arrays: dict[str, Any] = {k: v.numpy() for k, v in reference_params().items()}
    arrays["0.bias"] = np.array([{"evil": 1}, 2, 3, 4], dtype=object)
    with pytest.raises(ModelSpecError, match=r"weight '0\.bias' is a pickled object array"):
        load_spec_model(SPEC, weights=npz_bytes(arrays))


def test_torch_pickle_files_are_refused_by_the_sniffer() -> None:
    raw = pickle.dumps({"0.weight": [1.0]})
    with pytest.raises(ModelSpecError, match=r"weights are neither \.safetensors nor \.npz"):
        load_spec_model(SPEC, weights=raw)


def test_corrupt_safetensors_is_a_model_spec_error() -> None:
    raw = safetensors_save(reference_params())[:-8]
    with pytest.raises(ModelSpecError, match=r"weights are not a readable \.safetensors file"):
        load_spec_model(SPEC, weights=raw)


def test_non_numeric_weight_dtype_is_rejected() -> None:
    ref: dict[str, Any] = {k: v.numpy() for k, v in reference_params().items()}
    ref["0.bias"] = np.array([True, False, True, False])
    with pytest.raises(ModelSpecError, match=r"weight '0\.bias' has dtype torch\.bool"):
        load_spec_model(SPEC, weights=npz_bytes(ref))


def test_oversized_weights_file_is_rejected_before_parsing() -> None:
    shapes = parameter_shapes(SPEC)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 26
    raw = npz_bytes({"0.weight": np.zeros(3 * 1024 * 1024)})
    with pytest.raises(ModelSpecError, match=r"far more than 26 float64 parameters need"):
        load_spec_model(SPEC, weights=raw)


def test_npz_member_larger_than_its_shape_is_not_decompressed() -> None:
    buf = io.BytesIO()
    arrays: dict[str, Any] = {k: v.numpy() for k, v in reference_params().items()}
    arrays["0.weight"] = np.zeros(200_000)  # compresses to a few hundred bytes
    np.savez_compressed(buf, **arrays)
    with pytest.raises(ModelSpecError, match=r"weight '0\.weight' holds 1,600,128 bytes"):
        load_spec_model(SPEC, weights=buf.getvalue())


def test_an_npz_weight_whose_header_claims_more_than_it_holds_is_refused() -> None:
    # The header asks np.load for 80 GB; the member holds the 4 x 3 floats the model needs.
    header = io.BytesIO()
    npy_format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**10,)}
    )
    arrays: dict[str, Any] = {k: v.numpy() for k, v in reference_params().items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, array in arrays.items():
            raw = header.getvalue() + array.astype("<f8").tobytes() if name == "0.weight" else None
            with zf.open(f"{name}.npy", "w") as fh:
                if raw is None:
                    np.save(fh, array)
                else:
                    fh.write(raw)
    with pytest.raises(
        ModelSpecError,
        match=r"weight '0\.weight' claims shape \(10000000000,\) of float64 \(80,000,000,000 "
        r"bytes\) in its \.npy header but holds 96 bytes",
    ):
        load_spec_model(SPEC, weights=buf.getvalue())
