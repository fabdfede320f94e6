"""Precondition checks shared by every kernel and matrix-free product.

Each check raises an error from :mod:`plcore.errors` whose message carries the actual values
(shapes, dtypes, counts), so that a failure can be understood without a debugger.
"""

from __future__ import annotations

import torch
from torch import Tensor

from plcore.errors import DatasetError, NumericalError, ShapeMismatchError
from plcore.models.base import Model


def check_inputs(model: Model, X: Tensor) -> None:
    """Require X of shape (n, *model.input_shape), n >= 1, float64 and finite.

    Raises:
        ShapeMismatchError: X does not have one sample per row of shape ``model.input_shape``.
        DatasetError: X is not float64 or holds NaN / inf.
    """
    if not isinstance(X, Tensor):
        raise DatasetError(f"X must be a torch.Tensor, got {type(X).__name__}")
    expected = tuple(model.input_shape)
    if X.ndim != len(expected) + 1 or tuple(X.shape[1:]) != expected:
        raise ShapeMismatchError(
            f"X has shape {tuple(X.shape)}, the model expects (n, {', '.join(map(str, expected))})"
            f" i.e. samples of shape {expected}"
        )
    if X.shape[0] < 1:
        raise ShapeMismatchError(f"X has shape {tuple(X.shape)}: it holds no sample")
    if X.dtype != torch.float64:
        raise DatasetError(f"X must be float64, got {X.dtype}; convert it with X.double()")
    if not bool(torch.isfinite(X).all()):
        bad = int((~torch.isfinite(X)).sum())
        raise DatasetError(f"X holds {bad} non-finite entries (NaN or inf) out of {X.numel()}")


def resolve_params(
    model: Model, params: Tensor | None, *, device: torch.device | None = None
) -> Tensor:
    """The flat parameter vector w to evaluate at: ``params``, or the model's own w0 when None.

    Returns a detached float64 tensor of length m (``model.n_params``), on ``device`` when given.

    Raises:
        ShapeMismatchError: ``params`` is not a vector of length m.
        DatasetError: ``params`` is not float64.
        NumericalError: ``params`` holds NaN or inf (e.g. a diverged iterate).
    """
    if params is None:
        return model.flat_params().detach().to(device=device)
    m = model.n_params
    if not isinstance(params, Tensor):
        raise ShapeMismatchError(f"params must be a torch.Tensor, got {type(params).__name__}")
    if params.ndim != 1 or params.shape[0] != m:
        raise ShapeMismatchError(
            f"params must be a flat vector of length m={m}, got shape {tuple(params.shape)}; "
            f"the model has m = {m} trainable parameters"
        )
    if params.dtype != torch.float64:
        raise DatasetError(f"params must be float64, got {params.dtype}")
    if not bool(torch.isfinite(params).all()):
        bad = int((~torch.isfinite(params)).sum())
        raise NumericalError(f"params holds {bad} non-finite entries out of {m}")
    return params.detach().to(device=device)


def check_vector(name: str, v: Tensor, length: int, meaning: str) -> None:
    """Require a float64 vector of the given length (``meaning`` names it in the message)."""
    if not isinstance(v, Tensor):
        raise ShapeMismatchError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if v.ndim != 1 or v.shape[0] != length:
        raise ShapeMismatchError(
            f"{name} has shape {tuple(v.shape)}, expected ({length},) ({meaning})"
        )
    if v.dtype != torch.float64:
        raise DatasetError(f"{name} must be float64, got {v.dtype}")
