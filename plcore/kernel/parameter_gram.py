"""The parameter-space Gram matrix G(w) = J(w)^T J(w) (m x m), for N > m.

K = J J^T (N x N) and G = J^T J share their nonzero eigenvalues (both are the squared singular
values of J). When the problem is under-parameterized (N = n k > m), K has rank at most m < N, so
lambda_min(K) = 0 exactly and lambda_max(K) = lambda_max(G): G is all that needs computing, and
it is far smaller (at n = 4,096 and k = 10 on the 9,930-parameter CNN of bench/, K would take
13.4 GB and its eigendecomposition twice that; G takes 0.8 GB).

G = sum over chunks I of J_I^T J_I, with the rows J_I of a chunk of samples from
:func:`plcore.kernel.reference.jacobian_rows` (one chunk alive at a time, at most
:data:`plcore.kernel._blocks.DEFAULT_CHUNK_BYTES` of rows). Each entry of G is a sum of N
products, accumulated as one GEMM per chunk plus one addition per chunk: a chain of at most
N + C roundings for C chunks (:func:`gram_accumulation_length`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from plcore.kernel._blocks import samples_per_chunk
from plcore.kernel._checks import check_inputs, resolve_params
from plcore.kernel.reference import jacobian_rows
from plcore.models.base import Model


def chunk_count(n_samples: int, k: int, m: int, chunk_size: int | None = None) -> int:
    """C, the chunks :func:`parameter_gram` splits n samples into."""
    per = samples_per_chunk(n_samples, k, m, chunk_size)
    return -(-n_samples // per)


def gram_accumulation_length(n_samples: int, k: int, m: int, chunk_size: int | None = None) -> int:
    """The longest chain of roundings in one entry of G: N products summed, plus one addition
    per chunk and the symmetrization (G + G^T) / 2."""
    return n_samples * k + chunk_count(n_samples, k, m, chunk_size) + 2


def parameter_gram(
    model: Model,
    X: Tensor,
    *,
    params: Tensor | None = None,
    chunk_size: int | None = None,
    check: Callable[[], None] | None = None,
) -> Tensor:
    """G(w) = J(w)^T J(w), (m, m) float64, accumulated over chunks of Jacobian rows.

    ``chunk_size``: samples per chunk (None: as many as fit the default chunk budget);
    ``check`` (e.g. :meth:`plcore.progress.Progress.check`) runs before every chunk.
    """
    check_inputs(model, X)
    w = resolve_params(model, params)
    n, k, m = X.shape[0], model.output_dim, w.shape[0]
    per = samples_per_chunk(n, k, m, chunk_size)
    G = X.new_zeros(m, m)
    for start in range(0, n, per):
        if check is not None:
            check()
        R = jacobian_rows(model, X, w, start, min(start + per, n))
        G.addmm_(R.T, R)
    return 0.5 * (G + G.T)
