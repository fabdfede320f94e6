"""The reference tangent kernel: chunked contraction of explicit Jacobian rows.

K(w) = J(w) J(w)^T with J = DF (N x m), F sample-major (THEORY.md section 1). The rows of J
for a chunk of samples I are computed with ``torch.func``: ``vmap`` over the samples of
``jacrev`` of the one-sample map w -> f(w; x_i) in R^k, which costs k backward passes per
sample and memory linear in the chunk. Blocks K[I, J] = J_I J_J^T are accumulated by
:func:`plcore.kernel._blocks.accumulate_gram`: J_I is held while J_J is recomputed for every
later chunk, so at most two chunks of J are in memory (never all of J), at the price of
C(C+1)/2 chunk Jacobians for C chunks.

Some parameter-free ops have no ``vmap`` batching rule; then the rows of a chunk come from
``jacrev`` of the batched chunk map (vmap over the backward pass only), which is correct for
every model without interaction between samples but costs a factor of the chunk size more.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import jacrev, vmap

from plcore.kernel._blocks import accumulate_gram, samples_per_chunk
from plcore.kernel._checks import check_inputs, resolve_params
from plcore.models.base import Model


class _RowMaker:
    """Computes the J rows of a range of samples; remembers whether vmap over samples works."""

    def __init__(self, model: Model, X: Tensor, w: Tensor) -> None:
        self.model = model
        self.X = X
        self.w = w
        self.per_sample = True

    def _single(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return self.model.apply(params, x.unsqueeze(0)).reshape(-1)

    def _batched(self, params: dict[str, Tensor], Xc: Tensor) -> Tensor:
        return self.model.apply(params, Xc).reshape(-1)

    def __call__(self, start: int, stop: int) -> Tensor:
        Xc = self.X[start:stop]
        rows = (stop - start) * self.model.output_dim
        # Differentiate with respect to the parameter dict, not the flat w: the backward of
        # slicing w would write a zero-filled length-m gradient per parameter tensor.
        params = self.model.unflatten(self.w)
        J: dict[str, Tensor] | None = None
        if self.per_sample:
            try:
                J = vmap(jacrev(self._single), in_dims=(None, 0))(params, Xc)
            except RuntimeError:
                # An op without a batching rule (e.g. data-dependent control flow): use the
                # slower batched path for this and every later chunk.
                self.per_sample = False
        if J is None:
            J = jacrev(self._batched)(params, Xc)
        return torch.cat([J[name].reshape(rows, -1) for name in params], dim=1)


def jacobian_rows(model: Model, X: Tensor, w: Tensor, start: int, stop: int) -> Tensor:
    """The rows of J(w) for samples start..stop-1: shape ((stop - start) * k, m)."""
    return _RowMaker(model, X, w)(start, stop)


def reference_kernel(
    model: Model, X: Tensor, *, params: Tensor | None = None, chunk_size: int | None = None
) -> Tensor:
    """K(w) = J(w) J(w)^T from explicit Jacobian rows, chunk by chunk.

    Args:
        model: the model f(w; x); its samples must not interact (eval mode).
        X: inputs (n, *model.input_shape), float64.
        params: flat w to evaluate at; None for the model's own parameters w0.
        chunk_size: samples per chunk; None picks the most samples whose J rows fit in
            :data:`plcore.kernel._blocks.DEFAULT_CHUNK_BYTES` (256 MiB), counting two live chunks.

    Returns:
        K, (N, N) float64, N = n * k, row i*k + c = output c of sample i.
    """
    check_inputs(model, X)
    w = resolve_params(model, params)
    n, k, m = X.shape[0], model.output_dim, w.shape[0]
    chunk = samples_per_chunk(n, 2 * k, m, chunk_size)
    K = X.new_zeros(n * k, n * k)
    accumulate_gram(K, _RowMaker(model, X, w), n, k, chunk)
    return K
