"""Dataset sizes read without loading (headers, list lengths, the sklearn table), checked
against the shapes of the loaded dataset."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from plcore import load_dataset
from plcore.dataset_size import DataSize, dataset_size
from plcore.datasets_sklearn import BUNDLED, load_sklearn

rng = np.random.default_rng(0)


def _npz(X: np.ndarray, y: np.ndarray, compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, X=X, y=y)
    return buf.getvalue()


def _npy(table: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, table)
    return buf.getvalue()


CASES = [
    ("npz", _npz(rng.standard_normal((7, 3)), rng.standard_normal(7), False)),
    ("npz", _npz(rng.standard_normal((5, 1, 4, 4)), rng.standard_normal((5, 3)), True)),
    ("npy", _npy(rng.standard_normal((6, 4)))),
    ("json", json.dumps({"X": [[1.0], [2.0], [3.0]], "y": [[1.0, 0.0]] * 3}).encode()),
    ("json", json.dumps({"X": [[1.0], [2.0]], "y": [1.0, 0.0]}).encode()),
    ("csv", b"a,b,t\n1,2,3\n\n4,5,6\n7,8,9\n"),
]


@pytest.mark.parametrize(("fmt", "data"), CASES, ids=[f"{f}{i}" for i, (f, _) in enumerate(CASES)])
def test_size_equals_the_loaded_shapes(fmt: str, data: bytes) -> None:
    loaded = load_dataset(data, format=fmt)
    n, k = loaded.y.shape
    assert dataset_size(data, fmt) == DataSize(n_samples=n, n_outputs=k, available=n)


def test_npz_shapes_come_from_the_headers_of_a_huge_array() -> None:
    X = np.zeros((100_000, 2))
    data = _npz(X, np.zeros((100_000, 10)), True)
    assert len(data) < 100_000  # a compressed archive; the size is read from its headers
    assert dataset_size(data, "npz") == DataSize(100_000, 10, 100_000)


@pytest.mark.parametrize(
    ("source", "n", "k"),
    [
        ("sklearn:digits", 1797, 10),
        ("sklearn:digits?n=64&target=label", 64, 1),
        ("sklearn:iris?classes=0,2&n=20", 20, 2),
        ("sklearn:diabetes?n=100", 100, 1),
        ("sklearn:linnerud", 20, 3),
    ],
)
def test_sklearn_size_equals_the_loaded_dataset(source: str, n: int, k: int) -> None:
    _, Y, _ = load_sklearn(source)
    assert Y.shape == (n, k)
    size = dataset_size(source)
    assert size is not None and (size.n_samples, size.n_outputs) == (n, k)


def test_a_billion_sklearn_samples_are_sized_without_loading() -> None:
    assert dataset_size("sklearn:digits?n=1000000000") == DataSize(10**9, 10, 1797)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_the_bundled_table_matches_scikit_learn(name: str) -> None:
    X, Y, _ = load_sklearn(f"sklearn:{name}")
    assert (X.shape[0], Y.shape[1]) == BUNDLED[name]


@pytest.mark.parametrize(
    ("source", "fmt"),
    [
        (b"PK\x03\x04 broken", "npz"),
        (b"\x93NUMPY broken", "npy"),
        (b"[1, 2]", "json"),
        ("sklearn:nope", None),
        ("sklearn:iris?n=-3", None),
        ("other", None),
    ],
)
def test_unreadable_sources_have_no_size(source: bytes | str, fmt: str | None) -> None:
    assert dataset_size(source, fmt) is None
