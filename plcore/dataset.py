"""The dataset type shared by the loaders and the numerical core."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training data (X, y) in float64.

    Attributes:
        X: inputs, shape (n, *input_shape), float64, finite.
        y: targets, shape (n, k), float64, finite (a 1-D target is stored as (n, 1)).
        sha256: hex digest of the source bytes (or of the canonical arrays for named datasets).
        name: a short label, e.g. ``"sklearn:digits"`` or ``"upload.npz"``.
        target_columns: for CSV sources, the column names used as targets.
    """

    X: Tensor
    y: Tensor
    sha256: str
    name: str = ""
    target_columns: tuple[str, ...] = ()

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.y.shape[1])
