"""The size of a dataset, read without loading it: n samples and k targets per sample.

The service compares N = n k and the work it implies with its configured limits before any
array is parsed or any tensor exists (``service.guards``). Each format gives its sizes cheaply:

* ``.npz``: the shapes in the ``.npy`` headers of ``X`` and ``y`` inside the zip
  (``numpy.lib.format.read_magic`` / ``read_array_header_*``; a compressed member inflates only
  as far as its header);
* ``.npy``: the header's shape (n, p); the target is one column;
* ``.json`` ``{X, y}``: the lengths of the lists (JSON parsing, no arrays);
* ``.csv``: the non-empty lines after the header (one target column);
* ``"sklearn:NAME?n=..."``: the requested n and the classes / target mode, from the table of
  bundled sizes (:data:`plcore.datasets_sklearn.BUNDLED`), without importing scikit-learn.

Anything that cannot be read this way gives None: loading the data then reports what is wrong.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from typing import Any

from numpy.lib import format as npy_format


@dataclass(frozen=True)
class DataSize:
    """Sizes of a dataset.

    Attributes:
        n_samples: n (for a named dataset: the n asked for, which may exceed what it has).
        n_outputs: k, targets per sample.
        available: samples the source holds (a named dataset's bundled size), else n.
    """

    n_samples: int
    n_outputs: int
    available: int


def _npy_shape(stream: Any) -> tuple[int, ...]:
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        shape, _, _ = npy_format.read_array_header_1_0(stream)
    else:
        shape, _, _ = npy_format.read_array_header_2_0(stream)
    return tuple(int(s) for s in shape)


def _npz_size(data: bytes) -> DataSize | None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        shapes = {}
        for key in ("X", "y"):
            member = f"{key}.npy" if f"{key}.npy" in names else key
            if member not in names:
                return None
            with archive.open(member) as stream:
                shapes[key] = _npy_shape(stream)
    X, y = shapes["X"], shapes["y"]
    if not X or not y:
        return None
    k = math.prod(y[1:]) if len(y) > 1 else 1
    return DataSize(n_samples=X[0], n_outputs=k, available=X[0])


def _json_size(data: bytes) -> DataSize | None:
    obj = json.loads(data)
    if not isinstance(obj, dict) or not isinstance(obj.get("X"), list):
        return None
    y = obj.get("y")
    if not isinstance(y, list):
        return None
    k = len(y[0]) if y and isinstance(y[0], list) else 1
    n = len(obj["X"])
    return DataSize(n_samples=n, n_outputs=k, available=n)


def _csv_size(data: bytes) -> DataSize:
    lines = sum(1 for line in data.splitlines() if line.strip())
    n = max(lines - 1, 0)
    return DataSize(n_samples=n, n_outputs=1, available=n)


def dataset_size(source: bytes | str, format: str | None = None) -> DataSize | None:
    """n and k of a dataset's bytes (``format`` one of npz, npy, csv, json) or of a
    ``"sklearn:..."`` name; None when the source cannot be sized without loading it."""
    try:
        if isinstance(source, str):
            if source.startswith("sklearn:"):
                from plcore.datasets_sklearn import sklearn_size

                return sklearn_size(source)
            return None
        fmt = (format or "").lower().lstrip(".")
        if fmt == "npz" or (not fmt and source[:2] == b"PK"):
            return _npz_size(source)
        if fmt == "npy":
            shape = _npy_shape(io.BytesIO(source))
            return DataSize(n_samples=shape[0], n_outputs=1, available=shape[0]) if shape else None
        if fmt == "json":
            return _json_size(source)
        if fmt == "csv":
            return _csv_size(source)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, RecursionError):
        return None
    return None
