"""The tangent-kernel implementations, and the rule that picks one.

All methods compute the same matrix K(w) = J(w) J(w)^T (N x N, N = n*k, sample-major: row
i*k + c is output c of sample i) and agree to rounding error; they differ in cost and in the
models they accept. The tests check every method against J J^T built from a dense autograd
Jacobian.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from torch import nn

from plcore.errors import OptionsError
from plcore.models.base import Model
from plcore.models.layers import PARAMETERIZED_LAYERS, Conv2d

# The parameter attribute names each supported layer type owns (plcore.models.layers).
_SUPPORTED_PARAM_NAMES: dict[type[nn.Module], frozenset[str]] = {
    layer: frozenset({"weight", "bias"}) for layer in PARAMETERIZED_LAYERS
}


class KernelMethod(StrEnum):
    """How :func:`plcore.kernel.tangent_kernel` computes K = J J^T.

    Attributes:
        AUTO: ``STRUCTURED`` when every trainable parameter belongs to a layer type it supports
            (``Dense``, ``Conv2d``, ``Bias``, ``Scale`` from :mod:`plcore.models.layers`, no
            parameter shared between two layers), otherwise ``REFERENCE``. This is the default
            because ``STRUCTURED`` is never asymptotically slower and needs far less memory on
            wide models, while ``REFERENCE`` accepts every model.
        REFERENCE: chunked Jacobian contraction. Per-sample Jacobian rows are computed with
            ``torch.func`` (``vmap`` over samples of ``jacrev``) for one chunk of samples at a
            time and contracted into blocks K[I, J] = J_I J_J^T. Cost: about C(C+1)/2 chunk
            Jacobians for C chunks (each costs k backward passes per sample) plus N^2 m
            multiply-adds; memory: two chunks of J (2 x chunk_rows x m floats) plus K. Use it
            for models with layers the structured method does not know, and as the plain
            implementation the others are checked against.
        STRUCTURED: never forms J. One forward pass records every parameterized layer's input
            a, then k backward passes (one per output c, cotangent one-hot on c for all samples
            at once) record the derivative g of output c with respect to the layer's output.
            K is assembled layer by layer from Gram products of a and g (see
            :mod:`plcore.kernel.structured`). Cost: one forward, k backwards and, per dense
            layer of width d_in x d_out, O(N^2 (d_in + d_out)) for the Gram products; memory
            O(N * sum of layer output sizes) plus K. Use it for wide MLPs, CNNs and
            token-axis models built from the supported layers (every loaded model).
    """

    AUTO = "auto"
    REFERENCE = "reference"
    STRUCTURED = "structured"


@dataclass(frozen=True)
class KernelMethodChoice:
    """The concrete method that runs for a requested one, and why.

    Attributes:
        method: ``REFERENCE`` or ``STRUCTURED`` (never ``AUTO``).
        reason: one sentence for reports, e.g. why ``AUTO`` fell back to ``REFERENCE``.
    """

    method: KernelMethod
    reason: str


def parse_kernel_method(method: KernelMethod | str) -> KernelMethod:
    """``KernelMethod(method)``, raising :class:`OptionsError` with the allowed values."""
    try:
        return KernelMethod(method)
    except ValueError as exc:
        allowed = ", ".join(repr(m.value) for m in KernelMethod)
        raise OptionsError(f"unknown kernel method {method!r}; use one of {allowed}") from exc


def structured_obstacle(model: Model) -> str | None:
    """Why the structured method cannot run on ``model``, or None when it can.

    It can when every trainable parameter is a ``weight`` / ``bias`` of a ``Dense``, ``Conv2d``,
    ``Bias`` or ``Scale`` layer (exact type, so that a subclass with another ``forward`` is not
    misread), no parameter is shared between two layers (a shared parameter's Jacobian column
    is a sum over layers, which the per-layer Gram products would miss), and every ``Conv2d``
    has integer padding.
    """
    owner: dict[int, str] = {}
    for mod_name, mod in model.module.named_modules(remove_duplicate=True):
        for p_name, p in mod.named_parameters(recurse=False, remove_duplicate=False):
            if not p.requires_grad:
                continue
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            allowed = _SUPPORTED_PARAM_NAMES.get(type(mod))
            if allowed is None:
                return (
                    f"trainable parameter {full!r} belongs to a {type(mod).__name__} layer; "
                    f"the structured method supports "
                    f"{', '.join(t.__name__ for t in PARAMETERIZED_LAYERS)}"
                )
            if p_name not in allowed:
                return f"parameter {full!r} is not a weight or bias of its {type(mod).__name__}"
            if id(p) in owner:
                return f"parameter {full!r} is shared with {owner[id(p)]!r}"
            owner[id(p)] = full
        if isinstance(mod, Conv2d) and not all(isinstance(v, int) for v in mod.padding):
            return f"Conv2d {mod_name!r} has non-integer padding {mod.padding!r}"
    return None


def kernel_method_choice(model: Model, method: KernelMethod | str = "auto") -> KernelMethodChoice:
    """Resolve ``method`` for ``model`` and say why.

    ``AUTO`` becomes ``STRUCTURED`` when :func:`structured_obstacle` finds nothing, else
    ``REFERENCE``. Models are assumed to have no interaction between samples (they are in eval
    mode; both loaders guarantee it), which every method relies on.

    Raises:
        OptionsError: ``method`` is unknown, or ``STRUCTURED`` was requested for a model it
            does not support (the message says which parameter is the obstacle).
    """
    m = parse_kernel_method(method)
    obstacle = structured_obstacle(model)
    if m is KernelMethod.REFERENCE:
        return KernelMethodChoice(KernelMethod.REFERENCE, "requested: reference")
    if m is KernelMethod.STRUCTURED:
        if obstacle is not None:
            raise OptionsError(f"the structured kernel method cannot run on this model: {obstacle}")
        return KernelMethodChoice(KernelMethod.STRUCTURED, "requested: structured")
    if obstacle is None:
        return KernelMethodChoice(
            KernelMethod.STRUCTURED,
            "auto: every trainable parameter belongs to a Dense/Conv2d/Bias/Scale layer",
        )
    return KernelMethodChoice(KernelMethod.REFERENCE, f"auto: {obstacle}")


def resolve_kernel_method(model: Model, method: KernelMethod | str = "auto") -> KernelMethod:
    """The concrete method (``REFERENCE`` or ``STRUCTURED``) that ``method`` runs on ``model``.

    See :func:`kernel_method_choice` for the rule and the reason behind a choice.
    """
    return kernel_method_choice(model, method).method
