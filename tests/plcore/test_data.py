"""Dataset loading: every format, every named sklearn dataset, and every validation message."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import numpy as np
import pytest
import torch
from numpy.lib import format as npy_format

from plcore.data import DataLimits, array_digest, check_fits, load_dataset, sniff_data_format
from plcore.errors import DatasetError, ResourceLimitError, ShapeMismatchError
from plcore.models.spec import load_spec_model

RNG = np.random.default_rng(0)
X4 = RNG.normal(size=(6, 4))
Y1 = RNG.normal(size=6)


def npz(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


# --- formats -----------------------------------------------------------------------------------


def test_npz_gives_float64_tensors_with_2d_targets() -> None:
    raw = npz(X=X4.astype(np.float32), y=Y1, notes=np.arange(3))
    data = load_dataset(raw)
    assert data.X.dtype == torch.float64 and data.y.dtype == torch.float64
    assert data.X.shape == (6, 4) and data.y.shape == (6, 1)
    np.testing.assert_array_equal(data.X.numpy(), X4.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(data.y.numpy()[:, 0], Y1)
    assert data.sha256 == hashlib.sha256(raw).hexdigest()
    assert data.name == "npz"


def test_npz_images_keep_their_shape() -> None:
    X = RNG.normal(size=(5, 1, 3, 3))
    data = load_dataset(npz(X=X, y=RNG.normal(size=(5, 2))))
    assert data.X.shape == (5, 1, 3, 3) and data.y.shape == (5, 2)


def test_npy_uses_the_last_column_as_target_by_default() -> None:
    table = np.column_stack([X4, Y1])
    data = load_dataset(npy(table))
    np.testing.assert_array_equal(data.X.numpy(), X4)
    np.testing.assert_array_equal(data.y.numpy()[:, 0], Y1)
    assert data.target_columns == ("4",)


def test_npy_target_columns_are_string_indices_negative_allowed() -> None:
    table = np.column_stack([X4, Y1])
    data = load_dataset(npy(table), target_columns=["0", "-1"])
    np.testing.assert_array_equal(data.y.numpy(), table[:, [0, 4]])
    np.testing.assert_array_equal(data.X.numpy(), table[:, 1:4])
    assert data.target_columns == ("0", "4")


def test_npy_rejects_non_integer_target_column() -> None:
    with pytest.raises(DatasetError, match=r"npy target columns are column indices, got 'y'"):
        load_dataset(npy(np.ones((3, 3))), target_columns=["y"])


def test_npy_must_be_a_2d_table() -> None:
    with pytest.raises(
        DatasetError, match=r"^a npy dataset must be a 2-D table, got shape \(4,\)$"
    ):
        load_dataset(npy(np.ones(4)))


CSV = b"a,b,c,t\n1,2,3,4\n5,6,7,8\n9,10,11,12\n"


def test_csv_uses_header_and_last_column_by_default() -> None:
    data = load_dataset(CSV)
    assert data.X.tolist() == [[1, 2, 3], [5, 6, 7], [9, 10, 11]]
    assert data.y.tolist() == [[4], [8], [12]]
    assert data.target_columns == ("t",)
    assert data.name == "csv"


def test_csv_target_columns_by_name_keep_the_given_order() -> None:
    data = load_dataset(CSV, target_columns=["t", "a"])
    assert data.y.tolist() == [[4, 1], [8, 5], [12, 9]]
    assert data.X.tolist() == [[2, 3], [6, 7], [10, 11]]
    assert data.target_columns == ("t", "a")
    assert data.sha256 != load_dataset(CSV).sha256


def test_csv_accepts_a_utf8_bom_spaces_and_blank_lines() -> None:
    data = load_dataset("\ufeffx, y\n 1.5 , 2e-1\n\n3,4\n".encode())
    assert data.X.tolist() == [[1.5], [3.0]]
    assert data.y.tolist() == [[0.2], [4.0]]


def test_json_object_with_x_and_y() -> None:
    raw = json.dumps({"X": X4.tolist(), "y": Y1.tolist()}).encode()
    data = load_dataset(b"  \n" + raw)
    np.testing.assert_array_equal(data.X.numpy(), X4)
    assert data.y.shape == (6, 1)


@pytest.mark.parametrize("kind", ["list", "numpy", "torch"])
def test_mapping_of_lists_arrays_or_tensors(kind: str) -> None:
    convert = {"list": lambda a: a.tolist(), "numpy": lambda a: a, "torch": torch.from_numpy}
    data = load_dataset({"X": convert[kind](X4), "y": convert[kind](Y1)})
    np.testing.assert_array_equal(data.X.numpy(), X4)
    assert data.sha256 == array_digest(X4, Y1.reshape(-1, 1))
    assert data.name == "mapping"


def test_explicit_format_overrides_sniffing() -> None:
    data = load_dataset(b"{a},t\n1,2\n", format="CSV")
    assert data.X.tolist() == [[1.0]]


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        (npz(X=X4, y=Y1), "npz"),
        (npy(np.ones((2, 2))), "npy"),
        (b' \t{"X": [[1]], "y": [1]}', "json"),
        (b"a,b\n1,2\n", "csv"),
    ],
)
def test_format_sniffing_by_magic_bytes(raw: bytes, fmt: str) -> None:
    assert sniff_data_format(raw) == fmt


# --- scikit-learn ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n", "d", "k"),
    [
        ("digits", 1797, 64, 10),
        ("diabetes", 442, 10, 1),
        ("iris", 150, 4, 3),
        ("wine", 178, 13, 3),
        ("breast_cancer", 569, 30, 2),
        ("linnerud", 20, 3, 3),
    ],
)
def test_every_named_sklearn_dataset_loads_with_its_documented_shape(
    name: str, n: int, d: int, k: int
) -> None:
    data = load_dataset(f"sklearn:{name}")
    assert data.X.shape == (n, d) and data.y.shape == (n, k)
    assert data.name == f"sklearn:{name}"
    assert data.sha256 == array_digest(data.X.numpy(), data.y.numpy())
    if name in ("digits", "iris", "wine", "breast_cancer"):
        assert torch.equal(data.y.sum(dim=1), torch.ones(n, dtype=torch.float64))


def test_sklearn_subset_is_seeded_sorted_and_standardized() -> None:
    a = load_dataset("sklearn:wine?n=40&seed=3&standardize=true")
    b = load_dataset("sklearn:wine?n=40&seed=3&standardize=true")
    c = load_dataset("sklearn:wine?n=40&seed=4&standardize=true")
    assert torch.equal(a.X, b.X) and not torch.equal(a.X, c.X)
    assert a.X.shape == (40, 13)
    torch.testing.assert_close(a.X.mean(dim=0), torch.zeros(13, dtype=torch.float64))
    torch.testing.assert_close(a.X.std(dim=0, unbiased=False), torch.ones(13, dtype=torch.float64))
    full = load_dataset("sklearn:wine")
    idx = np.sort(np.random.default_rng(3).choice(178, size=40, replace=False))
    assert torch.equal(a.y, full.y[idx])


def test_sklearn_digits_are_scaled_to_unit_range_and_can_be_images() -> None:
    data = load_dataset("sklearn:digits?n=50&image=true")
    assert data.X.shape == (50, 1, 8, 8)
    assert data.X.min().item() == 0.0 and data.X.max().item() == 1.0


def test_sklearn_classes_and_label_targets() -> None:
    data = load_dataset("sklearn:iris?classes=2,0&target=label")
    assert data.X.shape == (100, 4)
    assert set(data.y[:, 0].tolist()) == {0.0, 1.0}
    onehot = load_dataset("sklearn:iris?classes=2,0")
    assert onehot.y.shape == (100, 2)
    # class 2 comes first in the list, so its samples (the last 50 of iris) are [1, 0]
    assert onehot.y[-1].tolist() == [1.0, 0.0] and onehot.y[0].tolist() == [0.0, 1.0]


def test_sklearn_regression_targets_can_be_standardized() -> None:
    raw = load_dataset("sklearn:diabetes")
    assert raw.y.mean().item() > 100
    z = load_dataset("sklearn:diabetes?standardize_y=1")
    assert abs(z.y.mean().item()) < 1e-12
    assert z.y.std(unbiased=False).item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("sklearn:mnist", r"unknown sklearn dataset 'mnist'; known: \['digits', 'diabetes'"),
        ("sklearn:iris?size=3", r"unknown sklearn parameters \['size'\]; known: \['n', 'seed'"),
        ("sklearn:iris?n=151", r"n=151 is more than the 150 samples of iris"),
        ("sklearn:iris?n=0", r"sklearn parameter n=0 must be at least 1"),
        ("sklearn:iris?n=x", r"sklearn parameter n='x' must be an integer"),
        ("sklearn:iris?standardize=maybe", r"standardize='maybe' must be true or false"),
        ("sklearn:diabetes?classes=0", r"'classes' applies to classification datasets"),
        ("sklearn:iris?standardize_y=1", r"'standardize_y' applies to regression datasets"),
        ("sklearn:wine?image=1", r"'image' applies to digits only, not wine"),
        ("sklearn:iris?target=prob", r"target='prob' must be 'onehot' or 'label'"),
        ("sklearn:iris?classes=0,7", r"classes='0,7' must be distinct labels of iris: \[0, 1, 2\]"),
        ("sklearn:iris?n=3&n=4", r"repeated parameter"),
        # seed is checked without n too (the source string names the dataset in the report)
        ("sklearn:iris?seed=abc", r"seed='abc' must be an integer of at most 9 ASCII digits"),
        ("sklearn:iris?seed=%00", r"seed='\\x00' must be an integer"),
        ("sklearn:iris?n=%D9%A3%D9%A2", r"n='٣٢' must be an integer of at most 9 ASCII digits"),
        ("sklearn:iris?n=%201", r"n=' 1' must be an integer"),
        ("sklearn:iris?classes=0,%D9%A1", r"classes='١' must be an integer"),
        ("sklearn:iris?seed=" + "1" * 5000, r"at most 256 characters; got 5018 characters"),
        ("sklearn:iris?n=5\x00", r"printable text"),
    ],
)
def test_sklearn_bad_queries_are_dataset_errors(source: str, pattern: str) -> None:
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(source)


def test_string_that_is_not_sklearn_is_refused_with_a_hint() -> None:
    with pytest.raises(DatasetError, match=r"a string source must be 'sklearn:NAME', got 'x\.csv'"):
        load_dataset("x.csv")


# --- validation --------------------------------------------------------------------------------


def test_non_finite_x_names_count_and_first_position() -> None:
    X = np.ones((8, 4))
    X[5, 2] = np.nan
    X[6, 0] = np.inf
    X[7, 3] = -np.inf
    with pytest.raises(
        DatasetError, match=r"^X has 3 non-finite values \(first at row 5, column 2\)$"
    ):
        load_dataset({"X": X, "y": np.ones(8)})


def test_non_finite_image_names_the_index_within_the_sample() -> None:
    X = np.ones((3, 1, 2, 2))
    X[1, 0, 1, 0] = np.nan
    with pytest.raises(
        DatasetError, match=r"^X has 1 non-finite values \(first at row 1, index \(0, 1, 0\)\)$"
    ):
        load_dataset(npz(X=X, y=np.ones(3)))


def test_non_finite_target_from_csv_nan_cell() -> None:
    with pytest.raises(
        DatasetError, match=r"^y has 1 non-finite values \(first at row 1, column 0\)$"
    ):
        load_dataset(b"a,t\n1,2\n3,nan\n")


def test_row_count_mismatch() -> None:
    with pytest.raises(DatasetError, match=r"^X has 10 rows but y has 9$"):
        load_dataset({"X": np.ones((10, 2)), "y": np.ones(9)})


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ({"X": [], "y": []}, r"^the dataset is empty: X has shape \(0,\)$"),
        ({"X": np.ones((0, 3)), "y": np.ones(0)}, r"^the dataset is empty: X has shape \(0, 3\)$"),
        (b"a,b\n", r"^the dataset is empty: the CSV has a header but no data rows$"),
        (b"  \n", r"^the dataset is empty: no bytes$"),
        ({"X": np.ones((2, 0)), "y": np.ones(2)}, r"^X has no features: shape \(2, 0\)$"),
        (
            {"X": np.ones((2, 3)), "y": np.ones((2, 0))},
            r"^y has no target columns: shape \(2, 0\)$",
        ),
    ],
)
def test_empty_data_is_rejected(source: Any, pattern: str) -> None:
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(source)


@pytest.mark.parametrize(
    ("X", "y", "pattern"),
    [
        (
            np.ones(3),
            np.ones(3),
            r"^X must have shape \(n, d\) or \(n, C, H, W\), got shape \(3,\)$",
        ),
        (np.ones((3, 2, 2)), np.ones(3), r"got shape \(3, 2, 2\)$"),
        (np.ones((3, 2)), np.ones((3, 1, 1)), r"^y must have shape \(n,\) or \(n, k\), got shape"),
    ],
)
def test_wrong_ndim_is_rejected(X: np.ndarray, y: np.ndarray, pattern: str) -> None:
    with pytest.raises(DatasetError, match=pattern):
        load_dataset({"X": X, "y": y})


def test_ragged_or_text_arrays_are_rejected() -> None:
    with pytest.raises(DatasetError, match=r"^X is not a rectangular numeric array"):
        load_dataset({"X": [[1, 2], [3]], "y": [1, 2]})
    with pytest.raises(DatasetError, match=r"^y is not a rectangular numeric array \(dtype <U1\)"):
        load_dataset({"X": [[1], [2]], "y": ["a", "b"]})


def test_mapping_needs_exactly_x_and_y() -> None:
    with pytest.raises(DatasetError, match=r"needs exactly the keys 'X' and 'y', got \['X', 'z'\]"):
        load_dataset({"X": [[1]], "z": [1]})


def test_npz_without_y_lists_what_it_found() -> None:
    with pytest.raises(
        DatasetError, match=r"needs arrays 'X' and 'y'; missing \['y'\], found \['X', 'Y'\]"
    ):
        load_dataset(npz(X=X4, Y=Y1))


def test_npz_with_pickled_objects_is_rejected() -> None:
    y = np.array([{"a": 1}] * 6, dtype=object)
    with pytest.raises(
        DatasetError, match=r"array 'y' of the \.npz holds Python objects \(pickle\)"
    ):
        load_dataset(npz(X=X4, y=y))


def test_npy_with_pickled_objects_is_rejected() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([[{"a": 1}, 2]], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=r"the \.npy holds Python objects \(pickle\)"):
        load_dataset(buf.getvalue())


def test_corrupt_npz_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError, match=r"the data is not a readable \.npz archive"):
        load_dataset(npz(X=X4, y=Y1)[:100])


@pytest.mark.parametrize(
    ("raw", "kwargs", "pattern"),
    [
        (b"a,b\n1,x\n", {}, r"^CSV line 2, column 'b': 'x' is not a number$"),
        (b"a,b\n1,2\n3,4\n\n5,\n", {}, r"^CSV line 5, column 'b': '' is not a number$"),
        (b"a,b\n1,2\n3\n", {}, r"^CSV line 3 has 1 cells, the header has 2$"),
        (b"1,2\n3,4\n", {}, r"the CSV needs a header row of column names; line 1 is numeric"),
        (b"a,a,b\n1,2,3\n", {}, r"the CSV header has duplicate column names \['a'\]"),
        (b"a\n1\n", {}, r"a CSV dataset needs at least 2 columns \(features and a target\), got 1"),
        (b"\xff\xfea,b", {}, r"^CSV data is not UTF-8 text"),
        (CSV, {"target_columns": ["z"]}, r"unknown target columns \['z'\]; the columns are"),
        (CSV, {"target_columns": ["a", "b", "c", "t"]}, r"leave a feature column"),
        (CSV, {"target_columns": ["a", "a"]}, r"must be distinct"),
        (npz(X=X4, y=Y1), {"target_columns": ["a"]}, r"target_columns applies to csv and npy"),
        (CSV, {"format": "parquet"}, r"unknown data format 'parquet'; use one of \['npz', 'npy'"),
        (b'{"X": [[1]], "y": [1], "w": 1}', {}, r"JSON dataset needs exactly the keys"),
        (b"{not json", {}, r"^the data is not valid JSON"),
        (b"[[1, 2]]", {"format": "json"}, r"a JSON dataset must be an object"),
    ],
)
def test_unreadable_or_invalid_bytes_name_the_problem(
    raw: bytes, kwargs: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(raw, **kwargs)


@pytest.mark.parametrize(
    ("limits", "pattern"),
    [
        (DataLimits(max_bytes=100), r"the data has \d+ bytes, over the limit of 100"),
        (DataLimits(max_samples=5), r"the dataset has 6 samples, over the limit of 5"),
        (DataLimits(max_features=3), r"has 4 input values per sample, over the limit of 3"),
        (DataLimits(max_outputs=0), r"has 1 targets per sample, over the limit of 0"),
        (DataLimits(max_values=29), r"has 30 values in all, over the limit of 29"),
    ],
)
def test_size_caps_raise_resource_limit_error(limits: DataLimits, pattern: str) -> None:
    with pytest.raises(ResourceLimitError, match=pattern):
        load_dataset(npz(X=X4, y=Y1), limits=limits)


@pytest.mark.parametrize(
    ("limits", "pattern"),
    [
        (DataLimits(max_samples=2), r"the CSV has more than 2 data rows of 4 columns"),
        (DataLimits(max_values=8), r"the CSV has more than 2 data rows of 4 columns"),
    ],
)
def test_csv_caps_stop_reading_early(limits: DataLimits, pattern: str) -> None:
    with pytest.raises(ResourceLimitError, match=pattern):
        load_dataset(CSV, limits=limits)


def test_default_limits_accept_a_moderate_dataset() -> None:
    data = load_dataset(npz(X=np.zeros((1000, 100)), y=np.zeros(1000)))
    assert data.n_samples == 1000 and data.n_outputs == 1


# --- check_fits --------------------------------------------------------------------------------


def _model(input_shape: list[int], output_dim: int) -> Any:
    if len(input_shape) == 1:
        spec = {"type": "mlp", "input_dim": input_shape[0], "widths": [], "output_dim": output_dim}
    else:
        spec = {
            "type": "layers",
            "input_shape": input_shape,
            "output_dim": output_dim,
            "layers": [{"type": "flatten"}, {"type": "linear", "out": output_dim}],
        }
    return load_spec_model(spec)


def test_check_fits_accepts_matching_data() -> None:
    check_fits(_model([4], 1), load_dataset({"X": X4, "y": Y1}))
    check_fits(_model([1, 8, 8], 10), load_dataset("sklearn:digits?n=5&image=true"))


def test_check_fits_names_both_input_shapes_and_the_reshape_that_fits() -> None:
    with pytest.raises(
        ShapeMismatchError,
        match=r"^data X has per-sample shape \(64,\) but the model expects input shape "
        r"\(1, 8, 8\); reshape X to \(n, 1, 8, 8\) to fit$",
    ):
        check_fits(_model([1, 8, 8], 10), load_dataset("sklearn:digits?n=5"))
    with pytest.raises(ShapeMismatchError, match=r"shape \(4,\) but the model expects .* \(3,\)$"):
        check_fits(_model([3], 1), load_dataset({"X": X4, "y": Y1}))


def test_check_fits_names_both_output_dimensions() -> None:
    with pytest.raises(
        ShapeMismatchError,
        match=r"^data y has 1 targets per sample \(shape \(6, 1\)\) but the model has "
        r"output_dim 2$",
    ):
        check_fits(_model([4], 2), load_dataset({"X": X4, "y": Y1}))


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _npz_raw(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in members.items():
            zf.writestr(f"{name}.npy", raw)
    return buf.getvalue()


def test_an_npy_header_claiming_more_values_than_the_limit_is_refused_before_allocation() -> None:
    # 48 bytes of data under a header that asks for 480 GB: np.load would allocate first.
    raw = _npy_header((6, 10**10)) + bytes(48)
    with pytest.raises(ResourceLimitError, match=r"the \.npy claims shape \(6, 10000000000\)"):
        load_dataset(raw, format="npy")
    npz = _npz_raw({"X": raw, "y": _npy_header((6,)) + bytes(48)})
    with pytest.raises(
        ResourceLimitError, match=r"array 'X' of the \.npz claims shape .* = 60,000,000,000 values"
    ):
        load_dataset(npz, format="npz")


def test_the_value_limit_applies_to_the_header_shape() -> None:
    npz = _npz_raw({"X": _npy_header((6, 3)) + bytes(144), "y": _npy_header((6,)) + bytes(48)})
    with pytest.raises(ResourceLimitError, match="= 18 values, over the limit of 10"):
        load_dataset(npz, format="npz", limits=DataLimits(max_values=10))
    assert load_dataset(npz, format="npz").X.shape == (6, 3)


def test_an_npy_header_that_disagrees_with_the_bytes_held_is_refused() -> None:
    short = _npz_raw({"X": _npy_header((6, 3)) + bytes(8), "y": _npy_header((6,)) + bytes(48)})
    with pytest.raises(
        DatasetError,
        match=r"claims shape \(6, 3\) of float64 \(144 bytes\) but "
        r"holds 8 bytes",
    ):
        load_dataset(short, format="npz")
    long = _npy_header((6, 4)) + bytes(6 * 4 * 8 + 8)
    with pytest.raises(DatasetError, match="but holds 200 bytes"):
        load_dataset(long, format="npy")


def test_an_npy_of_an_unknown_format_version_or_a_garbled_header_is_refused() -> None:
    raw = bytearray(_npy_header((6, 4)) + bytes(192))
    raw[6] = 9  # major version byte
    with pytest.raises(DatasetError, match=r"has \.npy format version 9\.0; only 1\.0 and 2\.0"):
        load_dataset(bytes(raw), format="npy")
    garbled = b"\x93NUMPY\x01\x00\x10\x00{'descr': ?????}"
    with pytest.raises(DatasetError, match=r"the \.npy is not a readable \.npy array"):
        load_dataset(garbled, format="npy")


@pytest.mark.parametrize("fmt", ["json", None])
def test_a_json_dataset_with_a_key_twice_or_nested_too_deep_is_refused(fmt: str | None) -> None:
    with pytest.raises(DatasetError, match="the key 'y' appears twice"):
        load_dataset(b'{"X": [[1.0], [2.0]], "y": [1.0, 2.0], "y": [3.0, 4.0]}', format=fmt)
    with pytest.raises(DatasetError, match="nested too deeply"):
        load_dataset(b'{"X": ' + b"[" * 10**5 + b"]" * 10**5 + b', "y": []}', format=fmt)
