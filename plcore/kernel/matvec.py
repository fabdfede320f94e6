"""Matrix-free products with J = DF(w) and K = J J^T, and the dense Jacobian for small problems.

F(w) in R^N (N = n*k, sample-major) is ``model.apply_flat(w, X)``; every function evaluates at
``params`` (a flat w of length m) or, when None, at the model's own parameters w0. The model is
never modified: parameters are passed functionally (``torch.func.functional_call``).

Costs: :func:`jvp` one forward-mode pass, :func:`vjp` one backward pass, :func:`kernel_matvec`
one of each; :func:`jacobian` k backward passes per sample and N x m memory.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import jvp as _jvp

from plcore.kernel._checks import check_inputs, check_vector, resolve_params
from plcore.kernel.reference import jacobian_rows
from plcore.models.base import Model


def outputs(model: Model, X: Tensor, *, params: Tensor | None = None) -> Tensor:
    """F(w) = (f(w; x_1), ..., f(w; x_n)) flattened sample-major, shape (N,)."""
    check_inputs(model, X)
    w = resolve_params(model, params)
    with torch.no_grad():
        return model.apply_flat(w, X).detach()


def jvp(model: Model, X: Tensor, u: Tensor, *, params: Tensor | None = None) -> Tensor:
    """J(w) u = d/dt F(w + t u) at t = 0 (forward mode, ``torch.func.jvp``), shape (N,)."""
    check_inputs(model, X)
    w = resolve_params(model, params)
    check_vector("u", u, w.shape[0], "one entry per trainable parameter")
    result = _jvp(lambda v: model.apply_flat(v, X), (w,), (u.detach(),))
    tangent: Tensor = result[1]
    return tangent.detach()


def vjp(model: Model, X: Tensor, a: Tensor, *, params: Tensor | None = None) -> Tensor:
    """J(w)^T a = grad_w (a . F(w)) (reverse mode), shape (m,).

    Plain autograd rather than ``torch.func.vjp``: the same numbers, and the first
    ``torch.func`` transform of a process imports torch._dynamo (seconds, uninterruptible).
    """
    check_inputs(model, X)
    w = resolve_params(model, params).detach().requires_grad_(True)
    N = X.shape[0] * model.output_dim
    check_vector("a", a, N, "one entry per output, N = n * k, sample-major")
    with torch.enable_grad():
        F = model.apply_flat(w, X)
        if not F.requires_grad:  # F does not depend on w
            return torch.zeros_like(w).detach()
        (grad,) = torch.autograd.grad(F, w, a.detach().to(F), allow_unused=True)
    return torch.zeros_like(w).detach() if grad is None else grad.detach()


def kernel_matvec(model: Model, X: Tensor, v: Tensor, *, params: Tensor | None = None) -> Tensor:
    """K(w) v = J (J^T v): one vjp and one jvp, never forming J or K. Shape (N,)."""
    w = resolve_params(model, params)
    return jvp(model, X, vjp(model, X, v, params=w), params=w)


def jacobian(model: Model, X: Tensor, *, params: Tensor | None = None) -> Tensor:
    """The dense Jacobian J(w) = DF(w), shape (N, m); row i*k + c is d f_c(w; x_i) / dw.

    Memory N x m: for tests and small problems. Uses the reference method's per-sample rows.
    """
    check_inputs(model, X)
    w = resolve_params(model, params)
    return jacobian_rows(model, X, w, 0, X.shape[0]).detach()
