"""The layer chain that :mod:`plcore.estimate.rounding` bounds: a model as a list of links.

A link is one step of a straight chain h_0 = x, h_j = step_j(h_{j-1}[, constant]) on values of
shape (n, ...) (flat vectors or images (n, C, H, W)). Accepted steps:

* parameterized layers :class:`~plcore.models.layers.Dense` (on flat values),
  :class:`~plcore.models.layers.Conv2d` (any stride, padding, dilation, groups),
  :class:`~plcore.models.layers.Bias` and :class:`~plcore.models.layers.Scale` (trainable or
  frozen, broadcast against the value but not enlarging it);
* smooth :class:`~plcore.models.layers.Activation` modules with a covered name;
* ONNX ``Binary`` add / sub / mul / div against a load-time constant (div only with the
  constant as divisor), ``Pad`` (constant), ``AvgPool2d``, ``GlobalPool("avg")``,
  ``BatchNormFixed``, ``Reduce`` mean over non-batch axes; ``nn.AvgPool2d`` (no divisor
  override) and the JSON ``GlobalAvgPool``;
* the LayerNorm normalisation ``LayerNormPlain`` over non-batch axes (ONNX LayerNormalization;
  the JSON ``LayerNorm`` becomes that step and its affine Scale and Bias links);
* layout steps that move entries without arithmetic and keep every sample's entries in that
  sample (``nn.Identity``, ``nn.Flatten``, ONNX Flatten / Reshape / Transpose / Squeeze /
  Unsqueeze; checked on a probe of index values);
* the residual y = x + block(x), whose block is a chain of these links itself: the JSON
  ``Residual``, and in an ONNX graph a value with two users, a sub-chain and an ``Add`` of the
  value with the sub-chain's end (nested residuals too).

No parameter may be used by two links (a shared parameter's Jacobian column is the sum of the
links' columns, which the per-link bound does not add up). Sources: ``nn.Sequential`` (JSON
specs) and the ONNX interpreter :class:`~plcore.models.onnx_graph.OnnxGraphModule` when its
wiring is such a chain. Anything else (ReLU, max pooling, Softmax, other branching) gives a
reason instead of a chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plcore.models import onnx_ops as ops
from plcore.models.base import Model
from plcore.models.layers import Activation, Bias, Conv2d, Dense, Scale
from plcore.models.onnx_graph import OnnxGraphModule
from plcore.models.onnx_layout import LAYOUT_ONLY
from plcore.models.spec_build import GlobalAvgPool, LayerNorm, Residual

#: activations whose library accuracy :mod:`plcore.estimate.rounding` assumes (tests check it)
COVERED_ACTIVATIONS = frozenset(
    {"identity", "tanh", "erf", "sigmoid", "softplus", "gelu", "silu", "sin"}
)

#: steps that only move entries (checked on a probe: a sample-preserving bijection)
LAYOUT_STEPS = (nn.Identity, nn.Flatten, *LAYOUT_ONLY)
#: linear averaging steps: each output is a mean of at most q inputs (rounding_spatial.pool_terms)
POOL_STEPS = (nn.AvgPool2d, ops.AvgPool2d, ops.GlobalPool, GlobalAvgPool, ops.Reduce)


@dataclass(frozen=True)
class Link:
    """One step of the chain; ``const`` is the constant operand of a Binary step and
    ``const_first`` whether it is the left operand; ``block`` the inner chain of a Residual."""

    module: nn.Module
    const: Tensor | None = None
    const_first: bool = False
    block: tuple[Link, ...] | None = None


def _accepts(m: nn.Module) -> str | None:
    if isinstance(m, Activation):
        if m.name not in COVERED_ACTIVATIONS or m.info.d2_sup is None:
            return f"activation {m.name!r} has no running-error bound"
        return None
    if isinstance(m, ops.GlobalPool) and m.kind != "avg":
        return "global max pooling is not smooth and has no running-error bound"
    if isinstance(m, ops.Reduce) and (m.kind != "mean" or m.axes is None):
        return f"Reduce{m.kind} over {m.axes or 'all axes'} has no running-error bound"
    if isinstance(m, nn.AvgPool2d) and m.divisor_override is not None:
        return "AvgPool2d with divisor_override has no running-error bound"
    if isinstance(m, (Dense, Conv2d, Bias, Scale, ops.Pad, ops.BatchNormFixed, *POOL_STEPS)):
        return None
    if isinstance(m, ops.LayerNormPlain):
        return None
    if isinstance(m, LAYOUT_STEPS):
        return None
    return f"step {type(m).__name__} has no running-error bound"


def _sequential_links(seq: nn.Sequential) -> tuple[list[Link] | None, str]:
    links: list[Link] = []
    for m in seq._modules.values():
        if m is None:
            continue
        if isinstance(m, Residual):
            inner, why = _sequential_links(m.block)
            if inner is None:
                return None, why
            links.append(Link(m, block=tuple(inner)))
            continue
        if isinstance(m, LayerNorm):  # its normalisation, then gamma and beta as their own links
            links.append(Link(ops.LayerNormPlain(-len(m.dims), m.eps)))
            links += [Link(a) for a in (m.scale, m.shift) if a is not None]
            continue
        refused = _accepts(m)
        if refused is not None:
            return None, refused
        links.append(Link(m))
    return links, ""


def _graph_links(g: OnnxGraphModule) -> tuple[list[Link] | None, str]:
    """The wiring as a chain; a fork x -> (block, Add(x, block(x))) becomes a residual link."""
    consts = {name: getattr(g, key) for name, key in g.const_keys}
    users: dict[str, int] = {g.output_name: 1}
    for _, ins, _ in g.wiring:
        for i in ins:
            if i not in consts:
                users[i] = users.get(i, 0) + 1
    links, current, pos, why = _graph_span(g, consts, users, g.input_name, 0, len(g.wiring))
    if links is None:
        return None, why
    if pos != len(g.wiring) or current != g.output_name:
        return None, "the ONNX output is not the end of the chain"
    return links, ""


def _residual_end(g: OnnxGraphModule, consts: dict[str, Tensor], at: int, x: str) -> int | None:
    """Index of the step after ``at`` that adds ``x`` to another computed value, if any."""
    for j in range(at + 1, len(g.wiring)):
        key, ins, _ = g.wiring[j]
        if x in ins:
            step = g.steps[key]
            moving = [i for i in ins if i not in consts]
            ok = isinstance(step, ops.Binary) and step.kind == "add" and len(moving) == 2
            return j if ok and moving[0] != moving[1] else None
    return None


def _graph_span(
    g: OnnxGraphModule,
    consts: dict[str, Tensor],
    users: dict[str, int],
    current: str,
    pos: int,
    stop: int,
    fork: str | None = None,
) -> tuple[list[Link] | None, str, int, str]:
    """Links of wiring[pos:stop] as a chain from value ``current``: (links, last value, next
    position, why not). A value with two users, the first starting a sub-chain and the second an
    Add of it with that sub-chain's end, is the residual y = x + block(x) (one link with a
    block; ``fork``: the value whose block this span is); any other fan-out is refused."""
    links: list[Link] = []
    while pos < stop:
        if users.get(current, 0) == 2 and current != fork:
            j = _residual_end(g, consts, pos, current)
            if j is None or j >= stop:
                return (
                    None,
                    current,
                    pos,
                    f"ONNX value {current} feeds a branch that is not a residual",
                )
            key, ins, out = g.wiring[j]
            other = next(i for i in ins if i not in consts and i != current)
            inner, end, nxt, why = _graph_span(g, consts, users, current, pos, j, current)
            if inner is None:
                return None, end, nxt, why
            if nxt != j or end != other or users.get(other, 0) != 1:
                return None, end, nxt, f"ONNX step {key} is not the end of a residual block"
            links.append(Link(g.steps[key], block=tuple(inner)))
            current, pos = out, j + 1
            continue
        if users.get(current, 0) > (2 if current == fork else 1):
            return None, current, pos, f"ONNX value {current} feeds {users[current]} steps"
        key, ins, out = g.wiring[pos]
        step = g.steps[key]
        moving = [i for i in ins if i not in consts]
        if moving != [current]:
            return None, current, pos, f"ONNX step {key} is not part of a straight chain"
        if isinstance(step, ops.Binary):
            if len(ins) != 2 or step.kind not in ("add", "sub", "mul", "div"):
                return (
                    None,
                    current,
                    pos,
                    f"ONNX step {key} ({step.kind}) has no running-error bound",
                )
            first = ins[0] != current
            if first and step.kind == "div":
                return None, current, pos, f"ONNX step {key} divides by the chain value"
            c = consts[ins[0] if first else ins[1]]
            if not c.is_floating_point():
                return None, current, pos, f"ONNX step {key} has a non-float constant"
            links.append(Link(step, c.detach().to(torch.float64), first))
        else:
            refused = _accepts(step)
            if refused is not None or len(ins) != 1:
                return None, current, pos, refused or f"ONNX step {key} takes constants"
            links.append(Link(step))
        current, pos = out, pos + 1
    return links, current, pos, ""


def layout_index(m: nn.Module, shape: tuple[int, ...]) -> Tensor | None:
    """For a layout step on values of ``shape`` (batch first): idx with y.flatten() =
    x.flatten()[idx] and the output shape's batch axis unchanged, when the step is a bijection
    that keeps every sample's entries in that sample; else None."""
    n, total = shape[0], math.prod(shape)
    src = torch.arange(total, dtype=torch.float64).reshape(shape)
    y = m(src)
    if y.ndim < 1 or y.shape[0] != n or y.numel() != total:
        return None
    idx = y.reshape(-1).to(torch.int64)
    per_in, per_out = total // max(n, 1), y.numel() // max(n, 1)
    sample_of_out = torch.arange(y.numel()) // max(per_out, 1)
    if not torch.equal(idx // max(per_in, 1), sample_of_out):
        return None
    if not torch.equal(torch.sort(idx).values, torch.arange(total)):
        return None
    return idx


def _probe(links: list[Link] | tuple[Link, ...], h: Tensor) -> tuple[Tensor | None, str]:
    """Run the chain on a probe batch and check the shape rules of each link."""
    for lk in links:
        m = lk.module
        if lk.block is not None:
            out, why = _probe(lk.block, h)
            if out is None:
                return None, why
            if out.shape != h.shape:
                return None, "a residual block changes the shape of its input"
            h = h + out
            continue
        if isinstance(m, Dense) and h.ndim != 2:
            return None, f"a Dense layer acts on values of shape {tuple(h.shape[1:])}, not flat"
        if isinstance(m, Conv2d) and h.ndim != 4:
            return None, f"a Conv2d layer gets values of shape {tuple(h.shape[1:])}"
        if isinstance(m, ops.Reduce) and any(a % h.ndim == 0 for a in m.axes or (0,)):
            return None, "a ReduceMean averages over the sample axis"
        if isinstance(m, ops.LayerNormPlain) and m.axis % h.ndim == 0:
            return None, "a LayerNormalization normalises over the sample axis"
        if isinstance(m, LAYOUT_STEPS) and layout_index(m, tuple(h.shape)) is None:
            return None, f"layout step {type(m).__name__} mixes samples or is not a bijection"
        if isinstance(m, ops.Binary):
            assert lk.const is not None
            y = m(lk.const, h) if lk.const_first else m(h, lk.const)
        else:
            y = m(h)
        if isinstance(m, Bias | Scale | ops.Binary | ops.BatchNormFixed) and y.shape != h.shape:
            return None, f"step {type(m).__name__} broadcasts the value to a larger shape"
        h = y
    return h, ""


def _shared(links: list[Link] | tuple[Link, ...], seen: set[int]) -> str | None:
    for lk in links:
        if lk.block is not None:
            why = _shared(lk.block, seen)
            if why is not None:
                return why
            continue
        if id(lk.module) in seen:
            return f"step {type(lk.module).__name__} is applied twice"
        seen.add(id(lk.module))
        for p in lk.module.parameters():
            if id(p) in seen:
                return "a parameter is shared by two layers"
            seen.add(id(p))
    return None


def _has_layer(links: list[Link] | tuple[Link, ...]) -> bool:
    return any(
        isinstance(lk.module, Dense | Conv2d | Bias | Scale)
        or (lk.block is not None and _has_layer(lk.block))
        for lk in links
    )


def chain_links(model: Model) -> tuple[list[Link] | None, str]:
    """(links, "") for a model the running-error bound covers, else (None, why not)."""
    module = model.module
    if isinstance(module, OnnxGraphModule):
        links, why = _graph_links(module)
    elif isinstance(module, nn.Sequential):
        links, why = _sequential_links(module)
    else:
        return None, f"{type(module).__name__} is neither a layer chain nor an ONNX graph"
    if links is None:
        return None, why
    if not _has_layer(links):
        return None, "no parameterized layer"
    for p in module.parameters():
        if p.dtype != torch.float64:
            return None, f"parameters in {p.dtype}, the bound assumes float64"
    why_shared = _shared(links, set())
    if why_shared is not None:
        return None, why_shared
    with torch.no_grad():
        out, why = _probe(links, torch.zeros((2, *model.input_shape), dtype=torch.float64))
    if out is None:
        return None, why
    return links, ""
