"""`tangent_kernel`: K(w) = J(w) J(w)^T by the method that fits the model."""

from __future__ import annotations

import torch
from torch import Tensor

from plcore.errors import NumericalError
from plcore.kernel._blocks import samples_per_chunk
from plcore.kernel._checks import check_inputs, resolve_params
from plcore.kernel.methods import KernelMethod, kernel_method_choice
from plcore.kernel.reference import reference_kernel
from plcore.kernel.structured import structured_kernel
from plcore.models.base import Model


def tangent_kernel(
    model: Model,
    X: Tensor,
    method: KernelMethod | str = KernelMethod.AUTO,
    *,
    params: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """The tangent kernel K(w) = J(w) J(w)^T (THEORY.md section 1; Liu, Zhu & Belkin 2022).

    J = DF(w) is the N x m Jacobian of F(w) = (f(w; x_1), ..., f(w; x_n)) in R^N, N = n * k,
    flattened sample-major: row i*k + c is output c of sample i. Never the m x m J^T J.

    Args:
        model: the loaded model; its samples must not interact (eval mode).
        X: inputs of shape (n, *model.input_shape), float64, finite.
        method: ``"auto"`` (default), ``"reference"`` or ``"structured"``; see
            :class:`KernelMethod` for costs and :func:`kernel_method_choice` for what ``"auto"``
            picks.
        params: the flat parameter vector w (length m, ``model.named_params()`` order) to
            evaluate at; None for the model's own w0. The model is never modified.
        chunk_size: samples per chunk of Jacobian rows; None picks it from a 256 MiB budget.

    Returns:
        K, an (N, N) float64 tensor, exactly symmetric: the result is replaced by (K + K^T)/2,
        which moves entries by rounding error only, because matrix-product kernels do not
        guarantee bitwise symmetry and the eigensolvers downstream read one triangle.

    Raises:
        ShapeMismatchError: X or params do not fit the model (both shapes in the message).
        DatasetError: X or params not float64, or X not finite.
        OptionsError: unknown method, or ``"structured"`` for a model it does not support.
        NumericalError: params not finite, or the kernel came out non-finite (overflow).

    Example:
        >>> K = tangent_kernel(model, X)                      # doctest: +SKIP
        >>> K.shape == (X.shape[0] * model.output_dim,) * 2   # doctest: +SKIP
        True
    """
    check_inputs(model, X)
    w = resolve_params(model, params)
    samples_per_chunk(X.shape[0], 1, 1, chunk_size)  # validates chunk_size before any work
    choice = kernel_method_choice(model, method)
    if choice.method is KernelMethod.STRUCTURED:
        K = structured_kernel(model, X, params=w, chunk_size=chunk_size)
    else:
        K = reference_kernel(model, X, params=w, chunk_size=chunk_size)
    K = 0.5 * (K + K.T)
    if not bool(torch.isfinite(K).all()):
        bad = int((~torch.isfinite(K)).sum())
        raise NumericalError(
            f"the tangent kernel ({choice.method.value}) has {bad} non-finite entries out of "
            f"{K.numel()}: the model overflows at these parameters"
        )
    return K
