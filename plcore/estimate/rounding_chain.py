"""The graph that :mod:`plcore.estimate.rounding` bounds: a model as a list of links.

A link is one step v_out = step(v_in[, constant]) on named values of shape (n, ...) (flat vectors
or images (n, C, H, W)), a merge v_out = v_a + v_b (or v_a - v_b) of two computed values of the
same shape, or a join v_out = (v_1, ..., v_m) of computed values along a non-batch axis (Concat);
the links are in an order where every value is computed before it is read, and a value may be
read by any number of links (its cotangent is then the sum of theirs). Accepted steps:

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
* merges: ONNX ``Binary`` add / sub of two computed values of one shape (residual connections,
  projection shortcuts, parallel branches), and the JSON ``Residual`` y = x + block(x), whose
  block's links read x;
* joins: ONNX ``Concat`` of computed values along an axis other than the sample axis (Inception
  and DenseNet blocks, concatenated feature branches).

No parameter may be used by two links (a shared parameter's Jacobian column is the sum of the
links' columns, which the per-link bound does not add up). Sources: ``nn.Sequential`` (JSON
specs) and the ONNX interpreter :class:`~plcore.models.onnx_graph.OnnxGraphModule`. Anything else
(ReLU, max pooling, Softmax, a product or quotient of two computed values, broadcasting merges,
a Concat with a constant or along the sample axis) gives a reason instead of a graph.
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
    """One link: ``module`` reads the values ``ins`` and writes ``out``; ``const`` is the constant
    operand of a Binary step and ``const_first`` whether it is the left operand; ``merge``
    ("add" / "sub") marks ins[0] +/- ins[1] of two computed values (``module`` then only names
    the step), "concat" the join of all ``ins`` along ``module.axis`` (an ``ops.Concat``)."""

    module: nn.Module
    ins: tuple[str, ...]
    out: str
    const: Tensor | None = None
    const_first: bool = False
    merge: str | None = None


@dataclass(frozen=True)
class Chain:
    """The links in evaluation order, the name of the model's input and of its output."""

    links: tuple[Link, ...]
    input: str
    output: str


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
    accepted = (Dense, Conv2d, Bias, Scale, ops.Pad, ops.BatchNormFixed, ops.LayerNormPlain)
    if isinstance(m, (*accepted, *POOL_STEPS, *LAYOUT_STEPS)):
        return None
    return f"step {type(m).__name__} has no running-error bound"


class _Names:
    def __init__(self) -> None:
        self.count = 0

    def new(self) -> str:
        self.count += 1
        return f"v{self.count}"


def _sequential_links(
    seq: nn.Sequential, x: str, names: _Names, links: list[Link]
) -> tuple[str | None, str]:
    """Append the links of ``seq`` applied to value ``x``; (output value, "") or (None, why)."""
    for m in seq._modules.values():
        if m is None:
            continue
        if isinstance(m, Residual):
            end, why = _sequential_links(m.block, x, names, links)
            if end is None:
                return None, why
            out = names.new()
            links.append(Link(m, (x, end), out, merge="add"))
            x = out
            continue
        if isinstance(m, LayerNorm):  # its normalisation, then gamma and beta as their own links
            steps: list[nn.Module] = [ops.LayerNormPlain(-len(m.dims), m.eps)]
            steps += [a for a in (m.scale, m.shift) if a is not None]
        else:
            refused = _accepts(m)
            if refused is not None:
                return None, refused
            steps = [m]
        for step in steps:
            out = names.new()
            links.append(Link(step, (x,), out))
            x = out
    return x, ""


def _graph_links(g: OnnxGraphModule) -> tuple[list[Link] | None, str]:
    """The wiring as links: merges where two computed values are added or subtracted."""
    consts = {name: getattr(g, key) for name, key in g.const_keys}
    links: list[Link] = []
    for key, ins, out in g.wiring:
        step = g.steps[key]
        moving = tuple(i for i in ins if i not in consts)
        if isinstance(step, ops.Binary) and len(moving) == 2 and len(ins) == 2:
            if step.kind not in ("add", "sub"):
                return None, f"ONNX step {key} ({step.kind}) of two computed values has no bound"
            links.append(Link(step, moving, out, merge=step.kind))
        elif isinstance(step, ops.Concat):
            if len(moving) != len(ins):
                return None, f"ONNX step {key} concatenates a computed value with a constant"
            links.append(Link(step, moving, out, merge="concat"))
        elif len(moving) != 1:
            return None, f"ONNX step {key} reads {len(moving)} computed values"
        elif isinstance(step, ops.Binary):
            if len(ins) != 2 or step.kind not in ("add", "sub", "mul", "div"):
                return None, f"ONNX step {key} ({step.kind}) has no running-error bound"
            first = ins[0] != moving[0]
            if first and step.kind == "div":
                return None, f"ONNX step {key} divides by a computed value"
            c = consts[ins[0] if first else ins[1]]
            if not c.is_floating_point():
                return None, f"ONNX step {key} has a non-float constant"
            links.append(Link(step, moving, out, c.detach().to(torch.float64), first))
        else:
            refused = _accepts(step)
            if refused is not None or len(ins) != 1:
                return None, refused or f"ONNX step {key} takes constants"
            links.append(Link(step, moving, out))
    return links, ""


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


def _probe(chain: Chain, x: Tensor) -> str | None:
    """Run the links on a probe batch and check the shape rules of each; None when all hold."""
    env = {chain.input: x}
    for lk in chain.links:
        if any(i not in env for i in lk.ins):
            return f"a value read by step {type(lk.module).__name__} is not computed before it"
        m, h = lk.module, env[lk.ins[0]]
        if lk.merge == "concat":
            assert isinstance(m, ops.Concat)
            if m.axis % h.ndim == 0:
                return "a Concat joins values along the sample axis"
            env[lk.out] = m(*(env[i] for i in lk.ins))
            continue
        if lk.merge is not None:
            other = env[lk.ins[1]]
            if other.shape != h.shape:
                return "an addition of two computed values broadcasts them to a larger shape"
            env[lk.out] = h + other if lk.merge == "add" else h - other
            continue
        if isinstance(m, Dense) and h.ndim != 2:
            return f"a Dense layer acts on values of shape {tuple(h.shape[1:])}, not flat"
        if isinstance(m, Conv2d) and h.ndim != 4:
            return f"a Conv2d layer gets values of shape {tuple(h.shape[1:])}"
        if isinstance(m, ops.Reduce) and any(a % h.ndim == 0 for a in m.axes or (0,)):
            return "a ReduceMean averages over the sample axis"
        if isinstance(m, ops.LayerNormPlain) and m.axis % h.ndim == 0:
            return "a LayerNormalization normalises over the sample axis"
        if isinstance(m, LAYOUT_STEPS) and layout_index(m, tuple(h.shape)) is None:
            return f"layout step {type(m).__name__} mixes samples or is not a bijection"
        if isinstance(m, ops.Binary):
            assert lk.const is not None
            y = m(lk.const, h) if lk.const_first else m(h, lk.const)
        else:
            y = m(h)
        if isinstance(m, Bias | Scale | ops.Binary | ops.BatchNormFixed) and y.shape != h.shape:
            return f"step {type(m).__name__} broadcasts the value to a larger shape"
        env[lk.out] = y
    return None if chain.output in env else "the output is not computed by the links"


def _shared(links: tuple[Link, ...]) -> str | None:
    seen: set[int] = set()
    for lk in links:
        if lk.merge is not None:
            continue
        if id(lk.module) in seen:
            return f"step {type(lk.module).__name__} is applied twice"
        seen.add(id(lk.module))
        for p in lk.module.parameters():
            if id(p) in seen:
                return "a parameter is shared by two layers"
            seen.add(id(p))
    return None


def chain_links(model: Model) -> tuple[Chain | None, str]:
    """(chain, "") for a model the running-error bound covers, else (None, why not)."""
    module = model.module
    if isinstance(module, OnnxGraphModule):
        links, why = _graph_links(module)
        chain = (
            None if links is None else Chain(tuple(links), module.input_name, module.output_name)
        )
    elif isinstance(module, nn.Sequential):
        found: list[Link] = []
        end, why = _sequential_links(module, "x", _Names(), found)
        chain = None if end is None else Chain(tuple(found), "x", end)
    else:
        return None, f"{type(module).__name__} is neither a layer chain nor an ONNX graph"
    if chain is None:
        return None, why
    if not any(isinstance(lk.module, Dense | Conv2d | Bias | Scale) for lk in chain.links):
        return None, "no parameterized layer"
    for p in module.parameters():
        if p.dtype != torch.float64:
            return None, f"parameters in {p.dtype}, the bound assumes float64"
    why_shared = _shared(chain.links)
    if why_shared is not None:
        return None, why_shared
    with torch.no_grad():
        why_probe = _probe(chain, torch.zeros((2, *model.input_shape), dtype=torch.float64))
    if why_probe is not None:
        return None, why_probe
    return chain, ""
