"""A proven upper bound on sup_{B(w, rho)} ||H_F|| and sup_B ||J||_2 for smooth layer graphs.

Applies to every model that :func:`plcore.estimate.bound_graph.build_graph` reads: chains and
residual graphs of dense and 2-D convolution layers (any depth, both parameterizations), biases,
elementwise scales, twice-differentiable activations, average and global average pooling,
layout steps, zero padding, multiplication by or addition of constants, batch normalisation with
stored statistics, LayerNorm, from JSON specs and from ONNX graphs alike. Anything else (ReLU,
max pooling, products of two computed values, shared weights) gives ``None`` and the reason
(:func:`bound_refusal`). The derivation is in docs/theory.md, section 16; in short:

Write the graph as z_0 = x, z_j = G_j(theta_j, z_inputs(j)), f = z_J, u and v unit directions in
parameter space. Every weight block moves by at most rho in Frobenius norm inside B(w, rho).

Forward, per sample and for every point of the ball (Z >= ||z_j||, T >= sup_u ||Dz_j[u]||,
S >= sup_{u,v} ||D^2 z_j[u, v]||; s, t the layer scales, nA = ||A(W_0)||_2 + c_op rho with
||A(U)||_2 <= c_op ||U||_F):
    weight  y = s A(W) x     Z = s nA Z_x,  T = sqrt((s c_op Z_x)^2 + (s nA T_x)^2),
                             S = s c_op T_x + s nA S_x                 (Cauchy-Schwarz over the
                             own block and the earlier ones: ||U|| ||Dx[v]|| + ||V|| ||Dx[u]||
                             <= T_x)
    bias    y = x + t bc(b)  Z = Z_x + |t| sqrt(rep) (||b_0|| + rho), T = sqrt(T_x^2 + t^2 rep)
    scale   y = x * s bc(g)  Z = |s| gmax Z_x, T = sqrt((s Z_x)^2 + (s gmax T_x)^2),
                             S = |s| T_x + |s| gmax S_x          (gmax = ||g_0||_inf + rho)
    act     y = phi(x)       T = phi1 T_x, S = phi2 T_x^2 + phi1 S_x
    map     y = P x + c      T = ||P|| T_x, S = ||P|| S_x
    add     y = x1 + x2      T = T_1 + T_2, S = S_1 + S_2
    norm    y = N(x)         T = N1 T_x, S = N2 T_x^2 + N1 S_x, with N1 = sqrt(d) / r, N2 =
                             6 sqrt(d) / r^2 and r <= sqrt(||x - mean x||^2 + d eps) on the ball
and the a-posteriori form Z_j <= ||z_j(w)|| + rho T_j (the mean value theorem on the segment).

Adjoint (second-order chain rule, any graph): with lambda_j = d(c . f)/dz_j for a unit c,
    c . D^2 f[u, v] = sum_j lambda_j . D^2 G_j[(u_j, Dz[u]), (v_j, Dz[v])]
so per sample ||D^2 f[u, v]|| <= sum_weight s c_op A2_j T_x + sum_scale |s| min(A2_j,
sqrt(rep) Ai_j) T_x + sum_act phi2 Ai_j T_x^2 + sum_norm N2 A2_j T_x^2, where A2_j >= ||lambda_j||_2
and Ai_j >= ||lambda_j||_inf over the ball and all unit c. These come in two forms, and the
smaller is used:
  * worst case, backwards from A2_J = Ai_J = 1 through the operator norms over the ball
    (weight: Ai_x = s min((col2 + rho) A2, col1 Ai + rho A2) with the largest 2- and 1-norms of
    a column of W_0);
  * a-posteriori: the exact backward vectors at the centre, per sample, over all unit c (the
    column norms of d f / d z_j, from k backward passes), plus rho times a proven Lipschitz
    constant L_j of lambda_j in w, itself recursive from the output (weight: L_x += s c_op A2_j +
    s nA L_j; act: L_x += phi2 T_x Ai_j + phi1 L_j; norm: L_x += N2 T_x A2_j + N1 L_j; ...).
    In the NTK parameterization Ai at the centre is O(1 / sqrt(width)) and so is L, which makes
    the bound shrink with width at any depth (Liu, Zhu and Belkin 2020, section 4 and appendix:
    the same argument with a-priori constants instead of the computed ones).
The per-sample bound is B_x = min(adjoint form, S_J), G_x = T_J, and across samples
  sup_B ||H_F|| <= beta_upper = sqrt(sum_x B_x^2),  sup_B ||J||_2 <= jacobian_upper =
  sqrt(sum_x G_x^2);  beta_F <= sup_B ||H_F||.

Operator norms are bounded from above, never estimated: ||W||_2 by a shifted Cholesky
certificate of W's Gram matrix (:func:`plcore.estimate.psd.spectral_norm_upper`); a convolution
by the reshaped-kernel bounds ||conv_W|| <= sqrt(N_ov) ||W_(C_out, C_in kh kw)||_2 and <= sqrt(kh
kw) ||W_(C_out kh kw, C_in)||_2 (per group, N_ov = how many output positions read one input
entry), and c_op = sqrt(N_ov); pooling by its window counts.

Floating point: the centre values and backward vectors carry running-error bounds (Higham 2002,
ch. 3: a sum of q products has error <= gamma_q |A| |x|; library functions within
:data:`plcore.estimate.rounding.LIB_ULPS` ulps), added to them before use; after a LayerNorm
these are not tracked and the worst-case forms apply. Every other quantity is a monotone
expression of non-negative float64 numbers with fewer than 10^6 roundings on any path, covered by
the final enlargement :data:`SAFETY`.

Shared modules or parameters (a submodule applied twice, tied weights) are refused
(:func:`shared_structure`): the recursion treats every step as its own block of parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import torch
from torch import Tensor, nn

from plcore.errors import OptionsError
from plcore.estimate.activation_constants import activation_bounds
from plcore.estimate.bound_graph import Graph, MapNorms, Refused, Step, build_graph, conv_overlap
from plcore.estimate.psd import U64, gamma, spectral_norm_upper
from plcore.estimate.rounding import DERIV_ABS_U, GELU_ABS_U, LIB_ULPS
from plcore.kernel._checks import resolve_params
from plcore.models import onnx_ops as ops
from plcore.models.base import Model
from plcore.models.layers import Activation, Conv2d, Dense

#: relative enlargement of the final bounds, covering float64 rounding in the recursion
SAFETY: Final = 1e-9

#: sup_x |phi(x)| for bounded activations (the rest are unbounded)
_SUP_ABS: Final = {"tanh": 1.0, "erf": 1.0, "sigmoid": 1.0, "sin": 1.0}
#: library error of phi relative to |phi| (rounding.LIB_ULPS ulps of 2 u each)
_REL_LIB: Final = 2.0 * U64 * LIB_ULPS / (1.0 - 2.0 * U64 * LIB_ULPS)
_TINY: Final = 2.0**-1000
_INF = math.inf


@dataclass(frozen=True)
class AnalyticBound:
    """Proven upper bounds over the ball B(w, rho) (module docstring).

    Attributes:
        beta_upper: >= sup_B ||H_F|| >= beta_F (Lipschitz constant of J in spectral norm).
        jacobian_upper: >= sup_B ||J||_2 = L_F.
        method: ``"layerwise-spectral"`` (worst-case operator norms only) or
            ``"a-posteriori adjoint"`` (the centre's backward vectors won for some sample).
        details: per-sample maxima, which form won, the width-scaling statement.
    """

    beta_upper: float
    jacobian_upper: float
    method: str = "layerwise-spectral"
    details: dict[str, Any] = field(default_factory=dict)


def shared_structure(module: nn.Module) -> str | None:
    """Why ``module`` shares a submodule or a parameter between two places (None if it does not).

    nn.Module.children() and parameters() list a shared object once, so a chain built from them
    would see a module applied twice as applied once (and bound a different function). Detected
    by walking ``_modules`` with duplicates kept and comparing identities.
    """
    seen_mod: dict[int, str] = {}
    seen_par: dict[int, str] = {}

    def walk(mod: nn.Module, prefix: str) -> str | None:
        for name, p in mod._parameters.items():
            if p is None:
                continue
            key = f"{prefix}{name}"
            if id(p) in seen_par:
                return f"parameter {key!r} is the same tensor as {seen_par[id(p)]!r} (tied)"
            seen_par[id(p)] = key
        for name, child in mod._modules.items():
            if child is None:
                continue
            key = f"{prefix}{name}"
            if id(child) in seen_mod:
                return f"module {key!r} is the same module as {seen_mod[id(child)]!r} (shared)"
            seen_mod[id(child)] = key
            why = walk(child, key + ".")
            if why is not None:
                return why
        return None

    return walk(module, "")


def bound_refusal(model: Model) -> str | None:
    """Why :func:`beta_upper_bound` has no bound for ``model`` (None when it has one)."""
    why = shared_structure(model.module)
    if why is not None:
        return why
    try:
        build_graph(model)
    except Refused as exc:
        return str(exc)
    return None


def has_analytic_bound(model: Model) -> bool:
    """Whether :func:`beta_upper_bound` applies to the model (:func:`bound_refusal` is None)."""
    return bound_refusal(model) is None


# ----- quantities at the centre (independent of rho) ---------------------------------------


@dataclass
class _Centre:
    """What the bound needs from the centre w, for every step j (per-sample tensors (n,))."""

    graph: Graph
    n: int
    k: int
    numel: list[int]
    z_norm: list[Tensor]  # >= ||z_j(w)|| exactly (computed norm rounded up, plus e)
    e: list[Tensor]  # >= ||z_j computed - z_j exact||
    const: list[dict[str, float]]  # weight-only constants of each step
    norms: list[MapNorms | None]
    a2c: list[Tensor]  # >= sup_c ||lambda_j(w)||_2 (exact)
    aic: list[Tensor]  # >= sup_c ||lambda_j(w)||_inf (exact)
    group: list[tuple[int, Tensor]]  # norm steps: (d, lower bound of min_g ||z - mean||)
    consumers: list[int]


def _up(x: Tensor, terms: int) -> Tensor:
    return x * (1.0 + gamma(terms + 2))


def _param_getter(model: Model, w: Tensor) -> Any:
    values = model.unflatten(w)
    names = {id(p): n for n, p in model.module.named_parameters()}

    def get(step: Step) -> Tensor:
        assert step.module is not None
        p = getattr(step.module, step.attr)
        name = names[id(p)]
        v = values[name] if name in values else p.detach()
        return v.detach().to(torch.float64)

    return get


def _weight_consts(step: Step, W: Tensor) -> dict[str, float]:
    """||A(W)||_2 from above, c_op, || |A(W)| ||_2 from above, largest column 2- and 1-norms,
    accumulation lengths forwards and backwards."""
    m = step.module
    if isinstance(m, Dense):
        return {
            "op": spectral_norm_upper(W),
            "c_op": 1.0,
            "abs": float(W.norm()) * (1 + gamma(W.numel() + 2)),
            "col2": float(W.norm(dim=0).max()) * (1 + gamma(W.shape[0] + 2)),
            "col1": float(W.abs().sum(dim=0).max()) * (1 + gamma(W.shape[0] + 2)),
            "q": float(W.shape[1]),
            "q_back": float(W.shape[0]),
        }
    assert isinstance(m, Conv2d)
    c_out, c_in_g, kh, kw = (int(s) for s in W.shape)
    groups = m.groups
    n_ov = conv_overlap(m)
    per = c_out // groups
    best = 0.0
    for g in range(groups):
        Wg = W[g * per : (g + 1) * per]
        r1 = spectral_norm_upper(Wg.reshape(per, c_in_g * kh * kw))
        r2 = spectral_norm_upper(Wg.permute(0, 2, 3, 1).reshape(per * kh * kw, c_in_g))
        best = max(best, min(math.sqrt(n_ov) * r1, math.sqrt(kh * kw) * r2))
    cols = W.transpose(0, 1).reshape(c_in_g, -1)
    c_op = math.sqrt(n_ov) * (1 + 4 * U64)
    return {
        "op": best * (1 + 4 * U64),
        "c_op": c_op,
        "abs": c_op * float(W.norm()) * (1 + gamma(W.numel() + 2)),
        "col2": float(cols.norm(dim=1).max()) * (1 + gamma(cols.shape[1] + 2)),
        "col1": float(cols.abs().sum(dim=1).max()) * (1 + gamma(cols.shape[1] + 2)),
        "q": float(c_in_g * kh * kw),
        "q_back": float(per * kh * kw),
    }


#: doubles held by one chunk of samples in the centre pass (values and k backward vectors)
_CHUNK_DOUBLES: Final = 20_000_000


@dataclass
class _PerSample:
    """Per-sample results of the centre pass for every step (tensors of one chunk of samples)."""

    z: list[Tensor] = field(default_factory=list)  # computed values (detached)
    lam_max: list[Tensor] = field(default_factory=list)  # max_c ||lambda_c computed||
    lam_gram: list[Tensor] = field(default_factory=list)  # lambda_max of the k x k Gram (+ margin)
    lam_col: list[Tensor] = field(default_factory=list)  # max_entry sqrt(sum_c lambda_c^2)


def _lam_stats(grads: list[Tensor], n: int) -> tuple[Tensor, Tensor, Tensor]:
    """From the k computed backward vectors of one step, per sample: max_c ||l_c||, an upper
    bound of ||M||_2^2 = lambda_max(M M^T) (M: k x d, rows l_c; eigvalsh of the k x k Gram plus
    its rounding and eigen-solver margin (10 k^2 u + gamma_{d+2}) tr(M M^T)), and
    max_i sqrt(sum_c l_c[i]^2)."""
    M = torch.stack([g.reshape(n, -1) for g in grads], dim=1)  # (n, k, d)
    k, d = int(M.shape[1]), int(M.shape[2])
    G = M @ M.transpose(1, 2)
    tr = torch.diagonal(G, dim1=1, dim2=2).sum(dim=1)
    top = torch.linalg.eigvalsh(G)[:, -1].clamp(min=0.0)
    gram = top + (10 * k * k * U64 + gamma(d + 2)) * tr * (1 + 4 * U64)
    col = (M**2).sum(dim=1).amax(dim=1).sqrt()
    return M.norm(dim=2).amax(dim=1), gram, col


def _chunk_pass(
    steps: list[Step], get: Any, norms: list[MapNorms | None], Xc: Tensor, k: int
) -> _PerSample:
    """Values and backward vectors of every step for one chunk of samples (exact in the graph's
    own arithmetic; their rounding is bounded by the callers)."""
    n = int(Xc.shape[0])
    x0 = Xc.detach().to(torch.float64).clone().requires_grad_(True)
    z: list[Tensor] = []
    with torch.enable_grad():
        for st in steps:
            if st.kind == "input":
                v = x0
            elif st.kind in ("weight", "bias", "scale"):
                assert st.fn is not None
                v = st.fn(z[st.inputs[0]], get(st))
            elif st.kind == "add":
                v = z[st.inputs[0]] + z[st.inputs[1]]
            elif st.kind == "concat":
                assert st.fn is not None
                v = st.fn(*(z[i] for i in st.inputs))
            elif st.kind == "norm":
                xin = z[st.inputs[0]]
                v = ops.LayerNormPlain(st.axis % xin.ndim, st.eps)(xin)
            else:
                assert st.fn is not None
                v = st.fn(z[st.inputs[0]])
            if v.ndim == 0 or int(v.shape[0]) != n:
                raise Refused(f"{st.where}: the value does not keep the sample axis")
            z.append(v)
        out = z[-1].reshape(n, -1)
        if out.shape[1] != k:
            raise Refused(f"the graph has {out.shape[1]} outputs per sample, the model {k}")
        per_c: list[list[Tensor]] = [[] for _ in z]
        for c_out in range(k):
            grads = torch.autograd.grad(
                out[:, c_out].sum(), z, retain_graph=c_out < k - 1, allow_unused=True
            )
            for j, g in enumerate(grads):
                per_c[j].append(torch.zeros_like(z[j]) if g is None else g.detach())
    res = _PerSample(z=[v.detach() for v in z])
    for vectors in per_c:
        mx, gram, col = _lam_stats(vectors, n)
        res.lam_max.append(mx)
        res.lam_gram.append(gram)
        res.lam_col.append(col)
    return res


def _centre(model: Model, X: Tensor, w: Tensor) -> _Centre:
    graph, norms_of = build_graph(model)
    steps = graph.steps
    get = _param_getter(model, w)
    n, k = int(X.shape[0]), model.output_dim
    consumers = [0] * len(steps)
    for st in steps:
        for i in st.inputs:
            consumers[i] += 1
    # shapes, map norms and weight constants from a one-sample pass
    probe = _chunk_pass(steps, get, [], X[:1], k)
    numel = [int(v[0].numel()) for v in probe.z]
    const: list[dict[str, float]] = []
    norms: list[MapNorms | None] = []
    for j, st in enumerate(steps):
        c: dict[str, float] = {}
        nm = st.norms
        if st.kind == "weight":
            c = _weight_consts(st, get(st))
        elif st.kind == "bias":
            p = get(st)
            c = {"norm": float(p.norm()) * (1 + gamma(p.numel() + 2)), "numel": p.numel()}
        elif st.kind == "scale":
            p = get(st)
            c = {"max": float(p.abs().max()), "numel": p.numel()}
        elif st.kind == "norm":
            axis = st.axis % probe.z[st.inputs[0]].ndim
            if axis == 0:
                raise Refused(f"{st.where}: normalises over the batch axis")
            c = {"axis": float(axis)}
        elif j in norms_of:
            nm = norms_of[j](probe.z[st.inputs[0]])
        const.append(c)
        norms.append(nm)
    chunk = max(1, _CHUNK_DOUBLES // max(1, (k + 2) * sum(numel)))
    parts = [_chunk_pass(steps, get, norms, X[i : i + chunk], k) for i in range(0, n, chunk)]

    def cat(attr: str) -> list[Tensor]:
        return [torch.cat([getattr(p, attr)[j] for p in parts]) for j in range(len(steps))]

    zd = cat("z")
    lam_max, lam_gram, lam_col = cat("lam_max"), cat("lam_gram"), cat("lam_col")
    e = _forward_errors(steps, zd, const, norms, numel)
    delta = _backward_errors(steps, zd, const, norms, e, lam_max, consumers, numel)
    z_norm = [_up(v.reshape(n, -1).norm(dim=1), numel[j]) + e[j] for j, v in enumerate(zd)]
    root_k = math.sqrt(k) * (1 + 4 * U64)
    a2c = [_up(lam_gram[j].sqrt(), 2) + root_k * delta[j] for j in range(len(steps))]
    aic = [_up(lam_col[j], k) + root_k * delta[j] for j in range(len(steps))]
    group = []
    for j, st in enumerate(steps):
        if st.kind != "norm":
            group.append((0, torch.zeros(n, dtype=torch.float64)))
            continue
        xin = zd[st.inputs[0]]
        axis = int(const[j]["axis"])
        lead = xin.reshape(*xin.shape[:axis], -1)
        d = int(lead.shape[-1])
        centred = lead - lead.mean(dim=-1, keepdim=True)
        yn = centred.norm(dim=-1).reshape(n, -1)
        xn = lead.norm(dim=-1).reshape(n, -1)
        # rounding of the mean and the subtraction: gamma_{d+2} (||x_g|| + ||y_g||)
        low = yn * (1 - gamma(d + 2)) - gamma(d + 4) * (xn + yn)
        group.append((d, low.amin(dim=1) - e[st.inputs[0]]))
    return _Centre(graph, n, k, numel, z_norm, e, const, norms, a2c, aic, group, consumers)


def _act_consts(m: Activation) -> tuple[float, float, float]:
    d1, d2 = activation_bounds(m.info)
    phi0 = abs(float(m.forward(torch.zeros(1, dtype=torch.float64))[0]))
    return d1, d2, phi0


def _forward_errors(
    steps: list[Step],
    z: list[Tensor],
    const: list[dict[str, float]],
    norms: list[MapNorms | None],
    numel: list[int],
) -> list[Tensor]:
    """e_j >= ||z_j computed - z_j exact|| per sample (module docstring, floating point)."""
    n = int(z[0].shape[0])
    zn = [v.reshape(n, -1).norm(dim=1) * (1 + gamma(v[0].numel() + 2)) for v in z]
    e: list[Tensor] = []
    for j, st in enumerate(steps):
        if st.kind == "input":
            e.append(torch.zeros(n, dtype=torch.float64))
            continue
        if st.kind == "add":
            a, b = st.inputs
            e.append((e[a] + e[b] + U64 * (zn[a] + zn[b] + e[a] + e[b])) * (1 + 4 * U64))
            continue
        if st.kind == "concat":  # exact copies: the error vectors are joined
            e.append(_joined_norm([e[i] for i in st.inputs]))
            continue
        x = st.inputs[0]
        base = zn[x] + e[x]
        c = const[j]
        s = abs(st.scale)
        if st.kind == "weight":
            val = s * (c["op"] * e[x] + gamma(int(c["q"]) + 2) * c["abs"] * base)
        elif st.kind == "bias":
            rep = numel[j] / c["numel"]
            val = e[x] + gamma(2) * (base + s * math.sqrt(rep) * c["norm"])
        elif st.kind == "scale":
            val = s * c["max"] * (e[x] + gamma(2) * base)
        elif st.kind == "act":
            assert isinstance(st.module, Activation)
            d1, _, _ = _act_consts(st.module)
            val = d1 * e[x] + _REL_LIB * zn[j] + _TINY * math.sqrt(numel[j])
            if st.module.name == "gelu":
                val = val + GELU_ABS_U * U64 * base
            if st.module.name == "softplus":
                val = val + math.exp(-20.0) * 1.001 * math.sqrt(numel[j])
        elif st.kind == "map":
            nm = norms[j]
            assert nm is not None
            val = nm.op * e[x]
            if nm.terms > 0:
                val = val + gamma(nm.terms + 1) * nm.abs_op * base
            if st.shift is not None:
                shift = _shift_norm(st.shift, numel[j])
                val = val + gamma(2) * (nm.abs_op * base + shift)
        else:  # norm: not tracked (the worst-case forms apply downstream)
            val = torch.full((n,), _INF, dtype=torch.float64)
        e.append(val * (1 + 4 * U64))
    return e


def _joined_norm(parts: list[Tensor]) -> Tensor:
    """>= sqrt(sum_i parts_i^2), the norm of joined vectors from their norms (per sample): the m
    squares, their sum and the root round by less than gamma_{m+2} relative, and the factor
    1 + gamma_{m+3} covers that and its own rounding."""
    total = sum((p * p for p in parts[1:]), parts[0] * parts[0])
    return total.sqrt() * (1 + gamma(len(parts) + 3))


def _shift_norm(shift: Tensor, numel: int) -> float:
    """||bc(c)|| for a constant broadcast against one sample of ``numel`` entries."""
    c = shift.reshape(-1)
    rep = max(numel / max(c.numel(), 1), 1.0)
    return float(c.norm()) * math.sqrt(rep) * (1 + gamma(c.numel() + 4))


def _backward_errors(
    steps: list[Step],
    z: list[Tensor],
    const: list[dict[str, float]],
    norms: list[MapNorms | None],
    e: list[Tensor],
    lam: list[Tensor],
    consumers: list[int],
    numel: list[int],
) -> list[Tensor]:
    """delta_j >= max_c ||lambda_j computed - lambda_j exact|| per sample (running error of the
    backward passes: the same rules as the forward errors, applied to the transposed steps)."""
    n = int(z[0].shape[0])
    delta = [torch.zeros(n, dtype=torch.float64) for _ in steps]
    contrib = [torch.zeros(n, dtype=torch.float64) for _ in steps]
    for j in range(len(steps) - 1, 0, -1):
        st = steps[j]
        if consumers[j] > 1:
            delta[j] = delta[j] + gamma(consumers[j]) * contrib[j]
        base = lam[j] + delta[j]
        c = const[j]
        s = abs(st.scale)
        if st.kind in ("add", "concat"):  # each input gets lambda_j or a slice of it, exactly
            for i in st.inputs:
                delta[i] = delta[i] + delta[j]
                contrib[i] = contrib[i] + base
            continue
        x = st.inputs[0]
        if st.kind == "weight":
            add = s * (c["op"] * delta[j] + gamma(int(c["q_back"]) + 2) * c["abs"] * base)
            mag = s * c["op"] * base
        elif st.kind == "bias":
            add, mag = delta[j], base
        elif st.kind == "scale":
            add = s * c["max"] * (delta[j] + gamma(2) * base)
            mag = s * c["max"] * base
        elif st.kind == "act":
            assert isinstance(st.module, Activation)
            d1, d2, _ = _act_consts(st.module)
            D = DERIV_ABS_U * U64 * max(1.0, d1)
            if st.module.name == "softplus":
                D += math.exp(-20.0) * 1.001
            if st.module.name == "identity":
                D = 0.0
            add = (d1 + D) * delta[j] + (D + d2 * e[x] + U64 * (d1 + D)) * base
            mag = (d1 + D) * base
        elif st.kind == "map":
            nm = norms[j]
            assert nm is not None
            add = nm.op * delta[j]
            if nm.terms > 0:
                add = add + gamma(nm.terms + 1) * nm.abs_op * base
            mag = nm.op * base
        else:  # norm
            add = torch.full((n,), _INF, dtype=torch.float64)
            mag = add
        delta[x] = delta[x] + add * (1 + 4 * U64)
        contrib[x] = contrib[x] + mag
    return delta


# ----- the bound on a ball ------------------------------------------------------------------


def beta_upper_bound(
    model: Model,
    X: Tensor,
    rho: float,
    *,
    params: Tensor | None = None,
    norm_cache: dict[Any, Any] | None = None,
) -> AnalyticBound | None:
    """Upper bounds on sup_{B(w, rho)} ||H_F|| and sup_B ||J||_2 (derivation: module docstring).

    Returns None when the model is outside the supported graphs (:func:`bound_refusal` says
    why). ``norm_cache`` is read and filled when given: it keeps what depends on the centre only
    (operator norms, the centre's values and backward vectors), so the caller keeps one per
    parameter vector and tries several radii at the cost of one.
    """
    if not (rho >= 0) or math.isinf(rho):
        raise OptionsError(f"rho must be finite and >= 0, got {rho}")
    if shared_structure(model.module) is not None:
        return None
    centre = None if norm_cache is None else norm_cache.get("centre")
    if centre is None:
        w = resolve_params(model, params, device=X.device)
        try:
            centre = _centre(model, X, w)
        except Refused:
            return None
        if norm_cache is not None:
            norm_cache["centre"] = centre
    return _on_ball(centre, model, X, rho)


def _on_ball(c: _Centre, model: Model, X: Tensor, rho: float) -> AnalyticBound:
    steps = c.graph.steps
    n = c.n
    dt = torch.float64
    zero = torch.zeros(n, dtype=dt)
    Z: list[Tensor] = []
    T: list[Tensor] = []
    S: list[Tensor] = []
    nA: list[float] = []
    N1: list[Tensor] = []
    N2: list[Tensor] = []
    for j, st in enumerate(steps):
        k = c.const[j]
        s = abs(st.scale)
        a = 0.0
        n1 = n2 = zero
        if st.kind == "input":
            z_w, t, sec = c.z_norm[0], zero, zero
        elif st.kind == "add":
            i1, i2 = st.inputs
            z_w, t, sec = Z[i1] + Z[i2], T[i1] + T[i2], S[i1] + S[i2]
        elif st.kind == "concat":  # ||(a, b)||^2 = ||a||^2 + ||b||^2 for every derivative
            z_w = _joined_norm([Z[i] for i in st.inputs])
            t = _joined_norm([T[i] for i in st.inputs])
            sec = _joined_norm([S[i] for i in st.inputs])
        else:
            x = st.inputs[0]
            if st.kind == "weight":
                a = k["op"] + k["c_op"] * rho
                z_w = s * a * Z[x]
                t = torch.sqrt((s * k["c_op"] * Z[x]) ** 2 + (s * a * T[x]) ** 2)
                sec = s * k["c_op"] * T[x] + s * a * S[x]
            elif st.kind == "bias":
                rep = c.numel[j] / k["numel"]
                z_w = Z[x] + s * math.sqrt(rep) * (k["norm"] + rho)
                t = torch.sqrt(T[x] ** 2 + s * s * rep)
                sec = S[x]
            elif st.kind == "scale":
                gmax = k["max"] + rho
                z_w = s * gmax * Z[x]
                t = torch.sqrt((s * Z[x]) ** 2 + (s * gmax * T[x]) ** 2)
                sec = s * T[x] + s * gmax * S[x]
            elif st.kind == "act":
                assert isinstance(st.module, Activation)
                d1, d2, phi0 = _act_consts(st.module)
                root = math.sqrt(c.numel[j])
                z_w = phi0 * root + d1 * Z[x]
                if st.module.name in _SUP_ABS:
                    z_w = torch.clamp(z_w, max=_SUP_ABS[st.module.name] * root)
                t = d1 * T[x]
                sec = d2 * T[x] ** 2 + d1 * S[x]
            elif st.kind == "map":
                nm = c.norms[j]
                assert nm is not None
                z_w = nm.op * Z[x]
                if st.shift is not None:
                    z_w = z_w + _shift_norm(st.shift, c.numel[j])
                t, sec = nm.op * T[x], nm.op * S[x]
            else:  # norm
                d, low = c.group[j]
                y_low = torch.clamp(low - rho * T[x], min=0.0)
                r = torch.sqrt((y_low**2 + d * st.eps) * (1 - 8 * U64))
                n1 = math.sqrt(d) / r
                n2 = 6.0 * math.sqrt(d) / r**2
                z_w = torch.full((n,), math.sqrt(c.numel[j]), dtype=dt)
                t = n1 * T[x]
                sec = n2 * T[x] ** 2 + n1 * S[x]
        # a-posteriori: ||z_j(w')|| <= ||z_j(w)|| + rho T_j on the ball
        Z.append(torch.minimum(z_w, c.z_norm[j] + rho * t))
        T.append(t)
        S.append(sec)
        nA.append(a)
        N1.append(n1)
        N2.append(n2)

    # backward: worst-case accumulations, then the a-posteriori minimum at each step
    A2_acc = [zero.clone() for _ in steps]
    Ai_acc = [zero.clone() for _ in steps]
    L = [zero.clone() for _ in steps]
    A2_acc[-1] = torch.ones(n, dtype=dt)
    Ai_acc[-1] = torch.ones(n, dtype=dt)
    hess = zero.clone()
    posterior_won = 0
    for j in range(len(steps) - 1, 0, -1):
        st = steps[j]
        a2 = torch.minimum(A2_acc[j], c.a2c[j] + rho * L[j])
        ai = torch.minimum(torch.minimum(Ai_acc[j], a2), c.aic[j] + rho * L[j])
        posterior_won += int((c.aic[j] + rho * L[j] < Ai_acc[j]).sum())
        k = c.const[j]
        s = abs(st.scale)
        if st.kind in ("add", "concat"):  # lambda_i = lambda_j, or a slice of it
            for i in st.inputs:
                A2_acc[i] += a2
                Ai_acc[i] += ai
                L[i] += L[j]
            continue
        x = st.inputs[0]
        if st.kind == "weight":
            hess += s * k["c_op"] * a2 * T[x]
            A2_acc[x] += s * nA[j] * a2
            Ai_acc[x] += s * torch.minimum((k["col2"] + rho) * a2, k["col1"] * ai + rho * a2)
            L[x] += s * k["c_op"] * a2 + s * nA[j] * L[j]
        elif st.kind == "bias":
            A2_acc[x] += a2
            Ai_acc[x] += ai
            L[x] += L[j]
        elif st.kind == "scale":
            gmax = k["max"] + rho
            rep = c.numel[j] / k["numel"]
            own = s * torch.minimum(a2, math.sqrt(rep) * ai)
            hess += own * T[x]
            A2_acc[x] += s * gmax * a2
            Ai_acc[x] += s * gmax * ai
            L[x] += own + s * gmax * L[j]
        elif st.kind == "act":
            assert isinstance(st.module, Activation)
            d1, d2, _ = _act_consts(st.module)
            hess += d2 * ai * T[x] ** 2
            A2_acc[x] += d1 * a2
            Ai_acc[x] += d1 * ai
            L[x] += d2 * T[x] * ai + d1 * L[j]
        elif st.kind == "map":
            nm = c.norms[j]
            assert nm is not None
            A2_acc[x] += nm.op * a2
            Ai_acc[x] += nm.inf * ai
            L[x] += nm.op * L[j]
        else:  # norm
            hess += N2[j] * a2 * T[x] ** 2
            A2_acc[x] += N1[j] * a2
            Ai_acc[x] += N1[j] * a2
            L[x] += N2[j] * T[x] * a2 + N1[j] * L[j]

    per_sample = torch.minimum(hess, S[-1])
    beta = float(per_sample.norm()) * (1.0 + SAFETY)
    jac = float(T[-1].norm()) * (1.0 + SAFETY)
    kinds = [st.kind for st in steps]
    n_weight = kinds.count("weight")
    linear_output = _linear_output(steps)
    method = "a-posteriori adjoint" if posterior_won else "layerwise-spectral"
    return AnalyticBound(
        beta_upper=beta,
        jacobian_upper=jac,
        method=method,
        details={
            "rho": rho,
            "per_sample_hessian_max": float(per_sample.max()),
            "per_sample_jacobian_max": float(T[-1].max()),
            "adjoint_form_used": int((hess <= S[-1]).sum()),
            "forward_form_used": int((hess > S[-1]).sum()),
            "a_posteriori_steps": posterior_won,
            "n_dense_layers": n_weight,
            "steps": len(steps) - 1,
            "width_scaling": (
                "O(1/sqrt(width)) (NTK parameterization, linear output: the a-posteriori "
                "backward vectors shrink like 1/sqrt(width) at every depth)"
                if linear_output
                else "O(1) in the width (an output activation: phi''(f) grad f grad f^T does "
                "not shrink)"
            ),
        },
    )


def _linear_output(steps: list[Step]) -> bool:
    for st in reversed(steps):
        if st.kind == "act":
            assert isinstance(st.module, Activation)
            return st.module.name == "identity"
        if st.kind in ("weight", "norm"):
            return True
    return True
