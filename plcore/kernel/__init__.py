"""The tangent kernel K(w) = J(w) J(w)^T and matrix-free products with J and K.

Conventions (THEORY.md section 1): F(w) in R^N, N = n*k, flattened sample-major (row i*k + c is
output c of sample i); J = DF(w) is N x m; K = J J^T is N x N; everything float64.

* :func:`tangent_kernel` - K(w), by one of the methods of :class:`KernelMethod`
  (:mod:`~plcore.kernel.reference`: chunked Jacobian rows; :mod:`~plcore.kernel.structured`:
  Gram products of layer inputs and output gradients, never J).
* :func:`resolve_kernel_method` / :func:`kernel_method_choice` - what ``"auto"`` runs, and why.
* :func:`outputs`, :func:`jvp`, :func:`vjp`, :func:`kernel_matvec`, :func:`jacobian` -
  F(w), J u, J^T a, K v and the dense J (:mod:`~plcore.kernel.matvec`).
* :func:`parameter_gram` - G(w) = J^T J (m x m), whose nonzero spectrum is K's: what an
  under-parameterized problem (N > m) computes instead of K.
* :func:`infinite_width_ntk` - the closed-form infinite-width NTK of an NTK-parameterized MLP
  (erf, relu), the limit that K(w0) approaches as the widths grow.
"""

from plcore.kernel._blocks import DEFAULT_CHUNK_BYTES
from plcore.kernel.infinite_width import infinite_width_ntk
from plcore.kernel.matvec import jacobian, jvp, kernel_matvec, outputs, vjp
from plcore.kernel.methods import (
    KernelMethod,
    KernelMethodChoice,
    kernel_method_choice,
    resolve_kernel_method,
)
from plcore.kernel.parameter_gram import parameter_gram
from plcore.kernel.tangent import tangent_kernel

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "KernelMethod",
    "KernelMethodChoice",
    "infinite_width_ntk",
    "jacobian",
    "jvp",
    "kernel_matvec",
    "kernel_method_choice",
    "outputs",
    "parameter_gram",
    "resolve_kernel_method",
    "tangent_kernel",
    "vjp",
]
