"""Accumulate a Gram matrix R R^T from row blocks that are produced on demand.

Both the reference kernel (rows of J) and the structured kernel (per-sample gradients of one
layer) need sum R R^T where R is too large to hold. The samples are split into C chunks; for
each chunk I the rows R_I are computed once and held while the rows R_J of every later chunk
are recomputed and streamed: K[I, J] = R_I R_J^T, K[J, I] = K[I, J]^T. At most two chunks of
rows live at a time; the price is C(C+1)/2 row computations instead of C. When all rows fit in
the budget (C = 1) they are computed once.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from plcore.errors import OptionsError

DEFAULT_CHUNK_BYTES = 256 * 2**20
"""Default memory budget (bytes) for the rows of one chunk (J rows, or per-sample gradients)."""


def samples_per_chunk(
    n_samples: int, rows_per_sample: int, row_length: int, chunk_size: int | None
) -> int:
    """``chunk_size`` if given, else the most samples whose rows fit :data:`DEFAULT_CHUNK_BYTES`.

    A chunk's rows take rows_per_sample * row_length * 8 bytes per sample (float64).

    Raises:
        OptionsError: ``chunk_size`` is not a positive integer.
    """
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise OptionsError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        return max(1, min(int(chunk_size), n_samples))
    per_sample = max(1, rows_per_sample * row_length * 8)
    return max(1, min(n_samples, DEFAULT_CHUNK_BYTES // per_sample))


def accumulate_gram(
    out: Tensor,
    rows_of: Callable[[int, int], Tensor],
    n_samples: int,
    rows_per_sample: int,
    chunk: int,
) -> None:
    """out += R R^T where R[s*r:(e)*r] = rows_of(s, e) are the rows of samples s..e-1.

    ``out`` is (N, N) with N = n_samples * rows_per_sample; ``chunk`` samples per block.
    Diagonal blocks are symmetrized, off-diagonal blocks are mirrored exactly.
    """
    r = rows_per_sample
    bounds = [(s, min(s + chunk, n_samples)) for s in range(0, n_samples, chunk)]
    if len(bounds) == 1:
        R = rows_of(0, n_samples)
        B = R @ R.T
        out += 0.5 * (B + B.T)
        return
    for a, (s0, e0) in enumerate(bounds):
        RI = rows_of(s0, e0)
        B = RI @ RI.T
        out[s0 * r : e0 * r, s0 * r : e0 * r] += 0.5 * (B + B.T)
        for s1, e1 in bounds[a + 1 :]:
            B = RI @ rows_of(s1, e1).T
            out[s0 * r : e0 * r, s1 * r : e1 * r] += B
            out[s1 * r : e1 * r, s0 * r : e0 * r] += B.T
