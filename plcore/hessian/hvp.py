"""Matrix-free second derivatives of the flat output map F: R^m -> R^N.

Notation (THEORY.md section 1): F(w) stacks f(w; x_i) for all samples, sample-major, so F_i is
one scalar output of one sample; Hess(F_i) is its m x m Hessian in the parameters w.

* :func:`output_hvp`         sum_i a_i Hess(F_i) u      (forward-over-reverse, one pass)
* :func:`second_directional` (u^T Hess(F_i) u)_i         (forward-over-forward, one pass)

Both cost a small constant times one forward/backward pass and never form an m x m matrix.
First-order products (J u, J^T a, F(w)) live in :mod:`plcore.kernel`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from plcore.errors import ShapeMismatchError
from plcore.kernel._checks import resolve_params
from plcore.models.base import Model

FlatMap = Callable[[Tensor], Tensor]


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


def output_hvp(
    model: Model, X: Tensor, a: Tensor, u: Tensor, *, params: Tensor | None = None
) -> Tensor:
    """M(a) u = sum_i a_i Hess(F_i)(w) u, shape m.

    Formula: M(a) is the Hessian of the scalar phi(w) = a . F(w), whose gradient is J(w)^T a, so
    M(a) u = grad_w [ (J(w)^T a) . u ] (double backward, Pearlmutter 1994). M(a) is symmetric.
    Plain autograd is used rather than torch.func: on small models it is several times faster.
    """
    w = resolve_params(model, params, device=X.device)
    _check_vector("a", a, _n_outputs(model, X), "N")
    _check_vector("u", u, w.numel(), "m")
    return output_hvp_at(model, X, w, a, u)


def output_hvp_at(model: Model, X: Tensor, w: Tensor, a: Tensor, u: Tensor) -> Tensor:
    """:func:`output_hvp` without the checks, for inner loops whose caller resolved w (finite,
    float64, length m) once: the finiteness scan of w costs a fifth of a one-sample product."""
    w = w.detach().requires_grad_(True)
    with torch.enable_grad():
        y = flat_map(model, X)(w)
        (g,) = torch.autograd.grad(y, w, a.to(w), create_graph=True)
        if not g.requires_grad:  # F is affine in w: its Hessians vanish
            return torch.zeros_like(w).detach()
        (hu,) = torch.autograd.grad(g, w, u.to(w), allow_unused=True)
    return torch.zeros_like(w) if hu is None else hu.detach()


def second_directional_graph(F: FlatMap, w: Tensor, u: Tensor, *, create_graph: bool) -> Tensor:
    """H_F(w)[u, u] for a w that requires grad; with ``create_graph`` the result stays
    differentiable in w (used for ascent on a . H_F(w)[u, u] in :mod:`plcore.estimate.probes`).

    Forward-mode derivatives by the double-vjp trick: for a dummy v, J u = grad_v [(J^T v) . u],
    and H_F[u, u] = d/dt J(w + t u) u is the same trick applied to w -> J(w) u.
    """
    y = F(w)
    v = torch.zeros_like(y, requires_grad=True)
    (g,) = torch.autograd.grad(y, w, v, create_graph=True)
    (Ju,) = torch.autograd.grad(g, v, u, create_graph=True)
    if not Ju.requires_grad:  # F is affine in w: no second derivative
        return torch.zeros_like(y)
    z = torch.zeros_like(y, requires_grad=True)
    (h,) = torch.autograd.grad(Ju, w, z, create_graph=True, allow_unused=True)
    if h is None or not h.requires_grad:  # F is affine in w: no second derivative
        return torch.zeros_like(y)
    (s,) = torch.autograd.grad(h, z, u, create_graph=create_graph, allow_unused=True)
    return torch.zeros_like(y) if s is None else s


def second_directional(
    model: Model, X: Tensor, u: Tensor, *, params: Tensor | None = None
) -> Tensor:
    """s = (u^T Hess(F_i)(w) u)_{i=1..N} = H_F[u, u], shape N.

    Formula: s = d^2/dt^2 F(w + t u) at t = 0, the derivative in direction u of the directional
    derivative w -> J(w) u (forward-over-forward: two nested ``torch.func.jvp``, 1.7-2.4x faster
    than the double-vjp trick of :func:`second_directional_graph` on the CNNs and MLPs of
    bench/, which remains the fallback for an operation without a forward-mode formula). Then
    a . s = u^T M(a) u for every a, so the best a for a fixed unit u is s / ||s|| with value ||s||.
    """
    w = resolve_params(model, params, device=X.device)
    _check_vector("u", u, w.numel(), "m")
    return second_directional_at(model, X, w, u)


def second_directional_at(model: Model, X: Tensor, w: Tensor, u: Tensor) -> Tensor:
    """:func:`second_directional` without the checks (see :func:`output_hvp_at`)."""
    F = flat_map(model, X)
    w, u = w.detach(), u.to(w).detach()
    try:
        return _forward_over_forward(F, w, u)
    except (NotImplementedError, RuntimeError):
        pass  # an operation without a forward-mode derivative: reverse mode below
    w = w.requires_grad_(True)
    with torch.enable_grad():
        s = second_directional_graph(F, w, u, create_graph=False)
    return s.detach()


def _forward_over_forward(F: FlatMap, w: Tensor, u: Tensor) -> Tensor:
    from torch.func import jvp  # the first transform of a process imports torch._dynamo

    def ju(v: Tensor) -> Tensor:
        return jvp(F, (v,), (u,))[1]

    with torch.no_grad():
        return jvp(ju, (w,), (u,))[1].detach()


def warm_up() -> None:
    """Run each kind of second-order pass once on a two-parameter function.

    The first forward-mode transform of a process imports torch._dynamo and the first double
    backward imports sympy: 1-3 s that no cancellation check can interrupt. A worker calls this
    when it starts, so that its first job's stages stay cancellable within their limits.
    """
    w = torch.ones(2, dtype=torch.float64)

    def F(v: Tensor) -> Tensor:
        return torch.tanh(v * v)

    _forward_over_forward(F, w, w)
    wg = w.clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(F(wg).sum(), wg, create_graph=True)
        torch.autograd.grad(g, wg, w)
