"""Matrix-free second derivatives of the flat output map F: R^m -> R^N.

Notation (THEORY.md section 1): F(w) stacks f(w; x_i) for all samples, sample-major, so F_i is
one scalar output of one sample; Hess(F_i) is its m x m Hessian in the parameters w.

* :func:`output_hvp`         sum_i a_i Hess(F_i) u      (forward-over-reverse, one pass)
* :func:`second_directional` (u^T Hess(F_i) u)_i         (forward-over-forward, one pass)

Both cost a small constant times one forward/backward pass and never form an m x m matrix.
The first-order helpers (:func:`flat_outputs`, :func:`flat_jvp`, :func:`flat_vjp`) are the
plain torch.func versions used inside this package.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp, vjp

from plcore.errors import ShapeMismatchError
from plcore.models.base import Model

FlatMap = Callable[[Tensor], Tensor]


def resolve_params(model: Model, params: Tensor | None, *, device: torch.device) -> Tensor:
    """The flat parameter vector to work at: ``params`` (checked) or the model's own w0."""
    if params is None:
        return model.flat_params().to(device=device, dtype=torch.float64)
    m = model.n_params
    if params.ndim != 1 or params.numel() != m:
        raise ShapeMismatchError(
            f"params must be a flat vector of length m={m}, got shape {tuple(params.shape)}"
        )
    return params.to(device=device, dtype=torch.float64)


def flat_map(model: Model, X: Tensor) -> FlatMap:
    """w -> F(w) on the inputs X (shape N = n * k, sample-major)."""

    def F(w: Tensor) -> Tensor:
        return model.apply_flat(w, X)

    return F


def _check_vector(name: str, v: Tensor, length: int, what: str) -> None:
    if v.ndim != 1 or v.numel() != length:
        raise ShapeMismatchError(
            f"{name} must be a vector of length {what}={length}, got shape {tuple(v.shape)}"
        )


def _n_outputs(model: Model, X: Tensor) -> int:
    return int(X.shape[0]) * model.output_dim


def flat_outputs(model: Model, X: Tensor, *, params: Tensor | None = None) -> Tensor:
    """F(w), shape N."""
    w = resolve_params(model, params, device=X.device)
    with torch.no_grad():
        return flat_map(model, X)(w)


def flat_jvp(model: Model, X: Tensor, u: Tensor, *, params: Tensor | None = None) -> Tensor:
    """J(w) u, shape N (forward mode)."""
    w = resolve_params(model, params, device=X.device)
    _check_vector("u", u, w.numel(), "m")
    return jvp(flat_map(model, X), (w,), (u.to(w),))[1]


def flat_vjp(model: Model, X: Tensor, a: Tensor, *, params: Tensor | None = None) -> Tensor:
    """J(w)^T a, shape m (reverse mode)."""
    w = resolve_params(model, params, device=X.device)
    _check_vector("a", a, _n_outputs(model, X), "N")
    _, pullback = vjp(flat_map(model, X), w)
    return pullback(a.to(w))[0]


def output_hvp(
    model: Model, X: Tensor, a: Tensor, u: Tensor, *, params: Tensor | None = None
) -> Tensor:
    """M(a) u = sum_i a_i Hess(F_i)(w) u, shape m.

    Formula: M(a) u = d/dt [J(w + t u)^T a] at t = 0, i.e. the forward-mode derivative (jvp) in
    direction u of the reverse-mode map w -> J(w)^T a ("forward-over-reverse", Pearlmutter 1994).
    M(a) is the Hessian of the scalar w -> a . F(w), so it is symmetric.
    """
    w = resolve_params(model, params, device=X.device)
    _check_vector("a", a, _n_outputs(model, X), "N")
    _check_vector("u", u, w.numel(), "m")
    F = flat_map(model, X)
    a = a.to(w)

    def pulled(v: Tensor) -> Tensor:
        return vjp(F, v)[1](a)[0]

    return jvp(pulled, (w,), (u.to(w),))[1]


def second_directional(
    model: Model, X: Tensor, u: Tensor, *, params: Tensor | None = None
) -> Tensor:
    """s = (u^T Hess(F_i)(w) u)_{i=1..N} = H_F[u, u], shape N.

    Formula: s = d^2/dt^2 F(w + t u) at t = 0, the forward-mode derivative in direction u of the
    directional derivative w -> J(w) u ("forward-over-forward"). Then a . s = u^T M(a) u for
    every a, so the best a for a fixed unit u is s / ||s|| with value ||s||.
    """
    w = resolve_params(model, params, device=X.device)
    _check_vector("u", u, w.numel(), "m")
    F = flat_map(model, X)
    u = u.to(w)

    def directional(v: Tensor) -> Tensor:
        return jvp(F, (v,), (u,))[1]

    return jvp(directional, (w,), (u,))[1]
