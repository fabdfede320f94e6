"""Dataset loading: bytes, mappings or a named scikit-learn dataset into a float64 ``Dataset``.

Sources of :func:`load_dataset`:

========  =====================================================================================
format    content
========  =====================================================================================
``npz``   arrays ``X`` (n, d) or (n, C, H, W) and ``y`` (n,) or (n, k); other arrays ignored;
          object (pickled) arrays are refused
``npy``   one 2-D array; the last column is the target, or ``target_columns`` given as column
          indices written as strings (``["3", "-1"]``); all other columns are features
``csv``   UTF-8 text with a header row of column names; the last column is the target unless
          ``target_columns`` names others; every cell numeric
``json``  ``{"X": [...], "y": [...]}`` (nested lists)
mapping   ``{"X": ..., "y": ...}`` with lists, numpy arrays or tensors
string    ``"sklearn:NAME[?key=value&...]"``, see ``plcore.datasets_sklearn``
========  =====================================================================================

With ``format=None`` bytes are sniffed: ``PK`` is npz, ``\\x93NUMPY`` is npy, a ``{`` after
leading whitespace is JSON, anything else is CSV.

Validation (:class:`~plcore.errors.DatasetError` with the values in the message): X is 2-D or
4-D, y is 1-D or 2-D (stored as (n, k)), both non-empty, with equal row counts and only finite
values; the message of a non-finite value names the count and the first position, as
``"X has 3 non-finite values (first at row 5, column 2)"`` (0-based sample row and column, or
the 0-based index within a sample for images). Size caps (:class:`DataLimits`) raise
:class:`~plcore.errors.ResourceLimitError`.

``Dataset.sha256`` is the SHA-256 of the source bytes (with ``"\\0" + json(target_columns)``
appended when target columns are given); for mappings and named datasets it is the SHA-256 of
the canonical arrays (:func:`array_digest`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import torch
from numpy.lib import format as npy_format

from plcore.dataset import Dataset
from plcore.errors import DatasetError, ResourceLimitError, ShapeMismatchError
from plcore.json_text import loads_strict
from plcore.models.base import Model

DataFormat = Literal["npz", "npy", "csv", "json"]
_FORMATS: Final = ("npz", "npy", "csv", "json")


@dataclass(frozen=True)
class DataLimits:
    """Size caps checked before and after parsing.

    Attributes:
        max_bytes: size of the source bytes (512 MiB).
        max_samples: n (100 000).
        max_features: entries of one input sample, d or C*H*W (1 000 000).
        max_outputs: k, targets per sample (10 000).
        max_values: n * (entries per sample + k), all values held in memory (64 Mi = 512 MiB
            as float64).
    """

    max_bytes: int = 512 * 1024 * 1024
    max_samples: int = 100_000
    max_features: int = 1_000_000
    max_outputs: int = 10_000
    max_values: int = 64 * 1024 * 1024


def array_digest(X: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of ``b"X" + shape + float64 bytes + b"y" + shape + float64 bytes`` (C order)."""
    h = hashlib.sha256()
    for tag, a in ((b"X", X), (b"y", y)):
        arr = np.ascontiguousarray(a, dtype=np.float64)
        h.update(tag + json.dumps(list(arr.shape)).encode() + arr.tobytes())
    return h.hexdigest()


def _as_array(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise ValueError(f"dtype {arr.dtype}")
        return arr.astype(np.float64, copy=False)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{name} is not a rectangular numeric array ({exc})") from exc


def _first_nonfinite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    if count:
        idx = np.unravel_index(int(np.argmax(bad.reshape(-1))), arr.shape)
        where = (
            f"row {idx[0]}, column {idx[1]}"
            if arr.ndim == 2
            else f"row {idx[0]}, index {tuple(int(i) for i in idx[1:])}"
        )
        raise DatasetError(f"{name} has {count} non-finite values (first at {where})")


def _finalize(
    X: np.ndarray,
    y: np.ndarray,
    *,
    sha256: str | None,
    name: str,
    target_columns: tuple[str, ...] = (),
    limits: DataLimits,
) -> Dataset:
    """Validate shapes, sizes and finiteness; convert to float64 tensors with y of shape (n, k).

    ``sha256=None`` means the digest of the canonical arrays (:func:`array_digest` of X and the
    2-D y).
    """
    if X.ndim >= 1 and X.shape[0] == 0:
        raise DatasetError(f"the dataset is empty: X has shape {X.shape}")
    if X.ndim not in (2, 4):
        raise DatasetError(f"X must have shape (n, d) or (n, C, H, W), got shape {X.shape}")
    if y.ndim not in (1, 2):
        raise DatasetError(f"y must have shape (n,) or (n, k), got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise DatasetError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    y = y.reshape(y.shape[0], -1)
    n, d, k = X.shape[0], math.prod(X.shape[1:]), y.shape[1]
    if d == 0:
        raise DatasetError(f"X has no features: shape {X.shape}")
    if k == 0:
        raise DatasetError(f"y has no target columns: shape {y.shape}")
    for what, value, cap in (
        ("samples", n, limits.max_samples),
        ("input values per sample", d, limits.max_features),
        ("targets per sample", k, limits.max_outputs),
        ("values in all", n * (d + k), limits.max_values),
    ):
        if value > cap:
            raise ResourceLimitError(f"the dataset has {value:,} {what}, over the limit of {cap:,}")
    _first_nonfinite("X", X)
    _first_nonfinite("y", y)
    return Dataset(
        sha256=sha256 or array_digest(X, y),
        X=torch.from_numpy(np.array(X, dtype=np.float64, order="C", copy=True)),
        y=torch.from_numpy(np.array(y, dtype=np.float64, order="C", copy=True)),
        name=name,
        target_columns=target_columns,
    )


def sniff_data_format(data: bytes) -> DataFormat:
    """npz (``PK``), npy (``\\x93NUMPY``), json (``{`` after whitespace), else csv."""
    if data[:2] == b"PK":
        return "npz"
    if data[:6] == b"\x93NUMPY":
        return "npy"
    if data.lstrip()[:1] == b"{":
        return "json"
    return "csv"


def _member_name(archive: zipfile.ZipFile, key: str) -> str:
    return f"{key}.npy" if f"{key}.npy" in archive.namelist() else key


def _member_size(archive: zipfile.ZipFile, key: str) -> int:
    return archive.getinfo(_member_name(archive, key)).file_size


def _check_npy_header(stream: Any, what: str, stored: int, limits: DataLimits) -> None:
    """Refuse an .npy whose header describes an array over the limits, or other bytes than
    ``stored`` (header included), from the header alone: ``np.load`` allocates the array the
    header claims before it reads a byte of data (a 40-byte header can ask for terabytes)."""
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise DatasetError(
                f"{what} has .npy format version {version[0]}.{version[1]}; only 1.0 and 2.0 "
                "are read"
            )
    except (ValueError, EOFError) as exc:
        raise DatasetError(f"{what} is not a readable .npy array: {exc}") from exc
    if dtype.hasobject:
        raise DatasetError(
            f"{what} holds Python objects (pickle); only numeric arrays are accepted"
        )
    count = math.prod(shape)
    if count > limits.max_values:
        raise ResourceLimitError(
            f"{what} claims shape {tuple(shape)} = {count:,} values, over the limit of "
            f"{limits.max_values:,}"
        )
    header = stream.tell()
    if header + count * dtype.itemsize != stored:
        raise DatasetError(
            f"{what} claims shape {tuple(shape)} of {dtype} ({count * dtype.itemsize:,} bytes) "
            f"but holds {stored - header:,} bytes of data"
        )


def _read_npz(data: bytes, limits: DataLimits) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            missing = [k for k in ("X", "y") if k not in archive.files]
            if missing:
                raise DatasetError(
                    f"an .npz dataset needs arrays 'X' and 'y'; missing {missing}, "
                    f"found {sorted(archive.files)}"
                )
            arrays = {}
            for key in ("X", "y"):
                size = _member_size(archive.zip, key)
                if size > 8 * limits.max_values + 64 * 1024:
                    raise ResourceLimitError(
                        f"array {key!r} holds {size:,} bytes uncompressed, over the limit of "
                        f"{8 * limits.max_values:,}"
                    )
                with archive.zip.open(_member_name(archive.zip, key)) as stream:
                    _check_npy_header(stream, f"array {key!r} of the .npz", size, limits)
                try:
                    arrays[key] = archive[key]
                except ValueError as exc:
                    if "allow_pickle" in str(exc):
                        raise DatasetError(
                            f"array {key!r} of the .npz holds Python objects (pickle); only "
                            "numeric arrays are accepted"
                        ) from exc
                    raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"the data is not a readable .npz archive: {exc}") from exc
    return _as_array("X", arrays["X"]), _as_array("y", arrays["y"])


def _split_columns(
    table: np.ndarray, names: list[str], target_columns: list[str] | None, kind: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Split a 2-D table into features and targets by column name (default: the last column)."""
    if table.ndim != 2:
        raise DatasetError(f"a {kind} dataset must be a 2-D table, got shape {table.shape}")
    if table.shape[1] < 2:
        raise DatasetError(
            f"a {kind} dataset needs at least 2 columns (features and a target), "
            f"got {table.shape[1]}"
        )
    wanted = [names[-1]] if target_columns is None else list(target_columns)
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise DatasetError(f"unknown target columns {unknown}; the columns are {names}")
    if not wanted or len(set(wanted)) != len(wanted) or len(wanted) >= len(names):
        raise DatasetError(
            f"target_columns must be distinct, non-empty and leave a feature column, got {wanted}"
        )
    target_idx = [names.index(c) for c in wanted]
    feature_idx = [i for i in range(len(names)) if i not in target_idx]
    return table[:, feature_idx], table[:, target_idx], tuple(wanted)


def _read_npy(
    data: bytes, target_columns: list[str] | None, limits: DataLimits
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    _check_npy_header(io.BytesIO(data), "the .npy", len(data), limits)
    try:
        table = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DatasetError("the .npy holds Python objects (pickle); only numbers") from exc
        raise DatasetError(f"the data is not a readable .npy array: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise DatasetError(f"the data is not a readable .npy array: {exc}") from exc
    table = _as_array("the .npy array", table)
    if table.ndim != 2:
        raise DatasetError(f"a npy dataset must be a 2-D table, got shape {table.shape}")
    names = [str(i) for i in range(table.shape[1])]
    if target_columns is not None:  # accept negative indices, normalised to 0..p-1
        normalised = []
        for c in target_columns:
            try:
                i = int(c)
            except ValueError as exc:
                raise DatasetError(
                    f"npy target columns are column indices, got {c!r}; the columns are 0.."
                    f"{table.shape[1] - 1}"
                ) from exc
            normalised.append(str(i + table.shape[1] if i < 0 else i))
        target_columns = normalised
    return _split_columns(table, names, target_columns, "npy")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(
    data: bytes, target_columns: list[str] | None, limits: DataLimits
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"CSV data is not UTF-8 text: {exc}") from exc
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    lines: list[int] = []
    rows: list[list[str]] = []
    for line, row in enumerate(reader, start=1):
        if not row:
            continue
        if header is None:
            header = [c.strip() for c in row]
            if all(_is_number(c) for c in header):
                raise DatasetError(
                    f"the CSV needs a header row of column names; line {line} is numeric: "
                    f"{header[:5]}"
                )
            continue
        if len(row) != len(header):
            raise DatasetError(
                f"CSV line {line} has {len(row)} cells, the header has {len(header)}"
            )
        if len(rows) >= limits.max_samples or (len(rows) + 1) * len(header) > limits.max_values:
            raise ResourceLimitError(
                f"the CSV has more than {len(rows):,} data rows of {len(header)} columns, over "
                f"the limits of {limits.max_samples:,} samples and {limits.max_values:,} values"
            )
        lines.append(line)
        rows.append(row)
    if header is None:
        raise DatasetError("the dataset is empty: the CSV has no rows")
    if len(set(header)) != len(header):
        dupes = sorted({c for c in header if header.count(c) > 1})
        raise DatasetError(f"the CSV header has duplicate column names {dupes}")
    if not rows:
        raise DatasetError("the dataset is empty: the CSV has a header but no data rows")
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError:  # find the first bad cell for the message
        for line, row in zip(lines, rows, strict=True):
            for c, cell in enumerate(row):
                if not _is_number(cell):
                    raise DatasetError(
                        f"CSV line {line}, column {header[c]!r}: {cell!r} is not a number"
                    ) from None
        raise DatasetError("the CSV cells could not be read as numbers") from None
    return _split_columns(table, header, target_columns, "CSV")


def _from_mapping(source: Mapping[str, Any], what: str) -> tuple[np.ndarray, np.ndarray]:
    keys = set(source)
    if keys != {"X", "y"}:
        raise DatasetError(
            f"{what} needs exactly the keys 'X' and 'y', got {sorted(map(str, keys))}"
        )
    return _as_array("X", source["X"]), _as_array("y", source["y"])


def load_dataset(
    source: bytes | str | Mapping[str, Any],
    format: str | None = None,
    *,
    target_columns: list[str] | None = None,
    limits: DataLimits | None = None,
) -> Dataset:
    """Read and validate a dataset (see the module docstring for formats and checks).

    Args:
        source: bytes of .npz / .npy / .csv / .json, a mapping {"X", "y"}, or
            ``"sklearn:NAME[?...]"``.
        format: ``"npz"``, ``"npy"``, ``"csv"`` or ``"json"`` for bytes; sniffed when None.
        target_columns: CSV column names, or npy column indices as strings, used as targets.
        limits: size caps (defaults of :class:`DataLimits`).

    Raises:
        DatasetError: unreadable or invalid data. ResourceLimitError: over a cap.
    """
    limits = limits or DataLimits()
    if isinstance(source, Mapping):
        X, y = _from_mapping(source, "a mapping dataset")
        return _finalize(X, y, sha256=None, name="mapping", limits=limits)
    if isinstance(source, str):
        if source.startswith("sklearn:"):
            from plcore.datasets_sklearn import load_sklearn

            X, y, name = load_sklearn(source)
            return _finalize(X, y, sha256=None, name=name, limits=limits)
        raise DatasetError(
            f"a string source must be 'sklearn:NAME', got {source[:40]!r}; pass file contents "
            "as bytes"
        )
    if not isinstance(source, bytes | bytearray | memoryview):
        raise DatasetError(f"unsupported dataset source of type {type(source).__name__}")
    data = bytes(source)
    if len(data) > limits.max_bytes:
        raise ResourceLimitError(
            f"the data has {len(data):,} bytes, over the limit of {limits.max_bytes:,}"
        )
    if not data.strip():
        raise DatasetError("the dataset is empty: no bytes")
    fmt = sniff_data_format(data) if format is None else format.lower().lstrip(".")
    if fmt not in _FORMATS:
        raise DatasetError(f"unknown data format {format!r}; use one of {list(_FORMATS)}")
    if target_columns is not None and fmt not in ("csv", "npy"):
        raise DatasetError(f"target_columns applies to csv and npy data, not {fmt}")
    columns: tuple[str, ...] = ()
    if fmt == "npz":
        X, y = _read_npz(data, limits)
    elif fmt == "npy":
        X, y, columns = _read_npy(data, target_columns, limits)
    elif fmt == "csv":
        X, y, columns = _read_csv(data, target_columns, limits)
    else:
        try:
            obj = loads_strict(data)
        except ValueError as exc:  # not JSON, not UTF-8, a key twice, nested too deeply
            raise DatasetError(f"the data is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise DatasetError(f"a JSON dataset must be an object {{X, y}}, got {type(obj)}")
        X, y = _from_mapping(obj, "a JSON dataset")
    digest = hashlib.sha256(data)
    if target_columns is not None:
        digest.update(b"\0" + json.dumps(list(target_columns)).encode())
    return _finalize(
        X, y, sha256=digest.hexdigest(), name=fmt, target_columns=columns, limits=limits
    )


def check_fits(model: Model, data: Dataset) -> None:
    """Check that X has per-sample shape ``model.input_shape`` and y has ``model.output_dim``.

    Raises:
        ShapeMismatchError: with both shapes, and the reshape that would fit when the sizes agree.
    """
    got = tuple(int(s) for s in data.X.shape[1:])
    want = tuple(model.input_shape)
    if got != want:
        hint = ""
        if math.prod(got) == math.prod(want):
            hint = f"; reshape X to (n, {', '.join(map(str, want))}) to fit"
        raise ShapeMismatchError(
            f"data X has per-sample shape {got} but the model expects input shape {want}{hint}"
        )
    if data.n_outputs != model.output_dim:
        raise ShapeMismatchError(
            f"data y has {data.n_outputs} targets per sample (shape {tuple(data.y.shape)}) but "
            f"the model has output_dim {model.output_dim}"
        )
