"""Second-order quantities of the output map F: Hessian-vector products and Hessian norms.

* :mod:`plcore.hessian.hvp`          matrix-free sum_i a_i Hess(F_i) u and H_F[u, u]
* :mod:`plcore.hessian.tensor_norm`  ||H_F|| (alternating power method), max_i ||Hess F_i||
* :mod:`plcore.hessian.dense`        dense N x m x m Hessians and a brute-force norm (checks)
* :mod:`plcore.hessian.lanczos`      largest-|lambda| eigenpair of a symmetric matvec
"""

from __future__ import annotations

from plcore.hessian.dense import brute_force_tensor_norm, dense_output_hessians
from plcore.hessian.hvp import output_hvp, second_directional
from plcore.hessian.tensor_norm import (
    OutputHessianNormResult,
    TensorNormResult,
    hessian_tensor_norm,
    max_output_hessian_norm,
)

__all__ = [
    "OutputHessianNormResult",
    "TensorNormResult",
    "brute_force_tensor_norm",
    "dense_output_hessians",
    "hessian_tensor_norm",
    "max_output_hessian_norm",
    "output_hvp",
    "second_directional",
]
