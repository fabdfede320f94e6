"""The layer chain that :mod:`plcore.estimate.rounding` bounds: a model as a list of links.

A link is one step of a straight chain h_0 = x, h_j = step_j(h_{j-1}[, constant]) on flat
(n, d) values. Accepted steps: :class:`~plcore.models.layers.Dense`,
:class:`~plcore.models.layers.Bias` and :class:`~plcore.models.layers.Scale` (trainable or
frozen), smooth
:class:`~plcore.models.layers.Activation` modules with a covered name, ONNX ``Binary``
add / sub / mul / div against a load-time constant (div only with the constant as divisor), and
steps that leave the value unchanged (``nn.Identity``, ``nn.Flatten``, ONNX layout ops that are
the identity on the given inputs). Sources: ``nn.Sequential`` (JSON specs) and the ONNX
interpreter :class:`~plcore.models.onnx_graph.OnnxGraphModule` when its wiring is such a chain.
Anything else gives a reason instead of a chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plcore.models import onnx_ops as ops
from plcore.models.base import Model
from plcore.models.layers import Activation, Bias, Dense, Scale
from plcore.models.onnx_graph import OnnxGraphModule
from plcore.models.onnx_layout import LAYOUT_ONLY

#: activations whose library accuracy :mod:`plcore.estimate.rounding` assumes (tests check it)
COVERED_ACTIVATIONS = frozenset(
    {"identity", "tanh", "erf", "sigmoid", "softplus", "gelu", "silu", "sin"}
)


@dataclass(frozen=True)
class Link:
    """One step of the chain; ``const`` is the constant operand of a Binary step and
    ``const_first`` whether it is the left operand."""

    module: nn.Module
    const: Tensor | None = None
    const_first: bool = False


def _accepts(m: nn.Module) -> str | None:
    if isinstance(m, Activation):
        if m.name not in COVERED_ACTIVATIONS or m.info.d2_sup is None:
            return f"activation {m.name!r} has no running-error bound"
        return None
    if isinstance(m, (Dense, Bias, Scale, nn.Identity, nn.Flatten, *LAYOUT_ONLY)):
        return None
    return f"step {type(m).__name__} has no running-error bound"


def _graph_links(g: OnnxGraphModule) -> tuple[list[Link] | None, str]:
    consts = {name: getattr(g, key) for name, key in g.const_keys}
    current, links = g.input_name, []
    for key, ins, out in g.wiring:
        step = g.steps[key]
        moving = [i for i in ins if i not in consts]
        if moving != [current]:
            return None, f"ONNX step {key} is not part of a straight chain"
        if isinstance(step, ops.Binary):
            if len(ins) != 2 or step.kind not in ("add", "sub", "mul", "div"):
                return None, f"ONNX step {key} ({step.kind}) has no running-error bound"
            first = ins[0] != current
            if first and step.kind == "div":
                return None, f"ONNX step {key} divides by the chain value"
            c = consts[ins[0] if first else ins[1]]
            if not c.is_floating_point():
                return None, f"ONNX step {key} has a non-float constant"
            links.append(Link(step, c.detach().to(torch.float64), first))
        else:
            why = _accepts(step)
            if why is not None or len(ins) != 1:
                return None, why or f"ONNX step {key} takes constants"
            links.append(Link(step))
        current = out
    if current != g.output_name:
        return None, "the ONNX output is not the end of the chain"
    return links, ""


def chain_links(model: Model) -> tuple[list[Link] | None, str]:
    """(links, "") for a model the running-error bound covers, else (None, why not)."""
    module = model.module
    if len(model.input_shape) != 1:
        return None, "inputs are not flat vectors"
    if isinstance(module, OnnxGraphModule):
        links, why = _graph_links(module)
    elif isinstance(module, nn.Sequential):
        links = [Link(m) for m in module._modules.values() if m is not None]
        why = next((w for m in links if (w := _accepts(m.module)) is not None), "")
        links = None if why else links
    else:
        return None, f"{type(module).__name__} is neither a layer chain nor an ONNX graph"
    if links is None:
        return None, why
    if not any(isinstance(lk.module, Dense | Bias | Scale) for lk in links):
        return None, "no parameterized layer"
    for p in module.parameters():
        if p.dtype != torch.float64:
            return None, f"parameters in {p.dtype}, the bound assumes float64"
    return links, ""
