"""Named datasets bundled with scikit-learn: ``"sklearn:NAME[?key=value&...]"`` (no downloads).

================  =======  =========  ==============  =========================================
NAME              samples  features   task            targets
================  =======  =========  ==============  =========================================
``digits``        1797     64 (8x8)   10 classes      one-hot (k = 10); pixels 0..16 become /16
``diabetes``      442      10         regression      disease progression (k = 1)
``iris``          150      4          3 classes       one-hot (k = 3)
``wine``          178      13         3 classes       one-hot (k = 3)
``breast_cancer`` 569      30         2 classes       one-hot (k = 2)
``linnerud``      20       3          regression      weight, waist, pulse (k = 3)
================  =======  =========  ==============  =========================================

Query parameters (all optional):

* ``n=64``: a random subset of n samples without replacement, drawn with
  ``numpy.random.default_rng(seed)``; the rows keep their original order.
* ``seed=0``: the seed of that draw.
* ``standardize=true``: z-score every feature, (x - mean) / std over the chosen samples
  (population std; a constant feature is only centred). Digits are divided by 16 first in any case.
* ``standardize_y=true`` (regression only): z-score every target column likewise.
* ``classes=0,1`` (classification only): keep the samples of these classes; one-hot columns and
  labels follow the order given.
* ``target=onehot|label`` (classification only): one-hot rows (default), or one column holding
  the class's position in the class list (the original label when ``classes`` is absent).
* ``image=true`` (digits only): X of shape (n, 1, 8, 8) instead of (n, 64).

Steps run in this order: class selection, subset, digit scaling, standardisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import numpy as np

from plcore.errors import DatasetError

if TYPE_CHECKING:
    from plcore.dataset_size import DataSize


@dataclass(frozen=True)
class _Named:
    loader: Callable[..., Any]
    classification: bool


def _loaders() -> dict[str, _Named]:
    from sklearn import datasets as d

    return {
        "digits": _Named(d.load_digits, True),
        "diabetes": _Named(d.load_diabetes, False),
        "iris": _Named(d.load_iris, True),
        "wine": _Named(d.load_wine, True),
        "breast_cancer": _Named(d.load_breast_cancer, True),
        "linnerud": _Named(d.load_linnerud, False),
    }


NAMES: Final = ("digits", "diabetes", "iris", "wine", "breast_cancer", "linnerud")
BUNDLED: Final = {
    "digits": (1797, 10),
    "diabetes": (442, 1),
    "iris": (150, 3),
    "wine": (178, 3),
    "breast_cancer": (569, 2),
    "linnerud": (20, 3),
}
"""Samples and one-hot target columns (classes; regression targets) of each bundled dataset
(the table of the module docstring; a test checks it against scikit-learn)."""
_PARAMS: Final = ("n", "seed", "standardize", "standardize_y", "classes", "target", "image")
_TRUE: Final = {"true", "1", "yes"}
_FALSE: Final = {"false", "0", "no"}


def _parse_bool(key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise DatasetError(f"sklearn parameter {key}={value!r} must be true or false")


_MAX_DIGITS: Final = 9
MAX_SOURCE_CHARS: Final = 256


def _parse_int(key: str, value: str, minimum: int) -> int:
    # ASCII digits only: int() would also take "٣٢", " 7", "1_0" and "+3".
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS):
        raise DatasetError(
            f"sklearn parameter {key}={value[:40]!r} must be an integer of at most "
            f"{_MAX_DIGITS} ASCII digits"
        )
    out = int(value)
    if out < minimum:
        raise DatasetError(f"sklearn parameter {key}={out} must be at least {minimum}")
    return out


def sklearn_size(source: str) -> DataSize | None:
    """n (as asked, before any check against the bundled size) and k of ``"sklearn:NAME?..."``,
    from :data:`BUNDLED` without loading anything; None for a name or query that
    :func:`load_sklearn` would refuse anyway."""
    from plcore.dataset_size import DataSize

    if len(source) > MAX_SOURCE_CHARS:
        return None
    name, _, query = source.removeprefix("sklearn:").partition("?")
    if name not in BUNDLED:
        return None
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        return None
    available, k = BUNDLED[name]
    raw_n = params.get("n", "")
    if raw_n and not (raw_n.isascii() and raw_n.isdigit()):
        return None
    n = int(raw_n) if raw_n else available
    if "classes" in params:
        k = len(params["classes"].split(","))
    if params.get("target") == "label":
        k = 1
    return DataSize(n_samples=n, n_outputs=k, available=available)


def _zscore(a: np.ndarray) -> np.ndarray:
    std = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(std > 0, std, 1.0)


def load_sklearn(source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """X, y (2-D) and the name for ``"sklearn:NAME[?...]"`` (see the module docstring)."""
    if len(source) > MAX_SOURCE_CHARS or not source.isprintable():
        raise DatasetError(
            f"a dataset name is printable text of at most {MAX_SOURCE_CHARS} characters; "
            f"got {len(source)} characters starting {source[:40]!r}"
        )
    spec = source.removeprefix("sklearn:")
    name, _, query = spec.partition("?")
    if name not in NAMES:
        raise DatasetError(f"unknown sklearn dataset {name!r}; known: {list(NAMES)}")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise DatasetError(f"bad query in {source!r}: {exc}") from exc
    params = dict(pairs)
    if len(params) != len(pairs):
        raise DatasetError(f"repeated parameter in {source!r}")
    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise DatasetError(f"unknown sklearn parameters {unknown}; known: {list(_PARAMS)}")
    named = _loaders()[name]
    if not named.classification:
        for key in ("classes", "target"):
            if key in params:
                raise DatasetError(f"{key!r} applies to classification datasets, not {name}")
    elif "standardize_y" in params:
        raise DatasetError(f"'standardize_y' applies to regression datasets, not {name}")
    if "image" in params and name != "digits":
        raise DatasetError(f"'image' applies to digits only, not {name}")

    X, y = named.loader(return_X_y=True)
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    if named.classification:
        labels = [int(c) for c in np.unique(y)]
        classes = labels
        if "classes" in params:
            classes = [_parse_int("classes", c, 0) for c in params["classes"].split(",")]
            bad = [c for c in classes if c not in labels]
            if bad or len(set(classes)) != len(classes) or not classes:
                raise DatasetError(
                    f"classes={params['classes']!r} must be distinct labels of {name}: {labels}"
                )
            keep = np.isin(y, classes)
            X, y = X[keep], y[keep]
    n_total = X.shape[0]
    # Checked even without n: the source string becomes the dataset's name in the report.
    seed = _parse_int("seed", params.get("seed", "0"), 0)
    if "n" in params:
        n = _parse_int("n", params["n"], 1)
        if n > n_total:
            raise DatasetError(f"n={n} is more than the {n_total} samples of {name}")
        idx = np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))
        X, y = X[idx], y[idx]
    if name == "digits":
        X = X / 16.0
    if _parse_bool("standardize", params.get("standardize", "false")):
        X = _zscore(X)
    if named.classification:
        position = {c: i for i, c in enumerate(classes)}
        pos = np.array([position[int(c)] for c in y])
        target = params.get("target", "onehot")
        if target == "onehot":
            Y = np.zeros((len(pos), len(classes)))
            Y[np.arange(len(pos)), pos] = 1.0
        elif target == "label":
            Y = pos.astype(np.float64).reshape(-1, 1)
        else:
            raise DatasetError(f"target={target!r} must be 'onehot' or 'label'")
    else:
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if _parse_bool("standardize_y", params.get("standardize_y", "false")):
            Y = _zscore(Y)
    if name == "digits" and _parse_bool("image", params.get("image", "false")):
        X = X.reshape(-1, 1, 8, 8)
    return X, Y, f"sklearn:{spec}"
