"""The loaded-model type shared by both loaders and every computation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

ModelFormat = Literal["json", "onnx"]


@dataclass(frozen=True, eq=False)
class Model:
    """A model f(w; x) ready for the numerical core.

    Attributes:
        module: the ``torch.nn.Module``, in eval mode, float64, built only from
            ``plcore.models.layers`` parameterized layers plus parameter-free ops.
        input_shape: the shape of ONE sample, e.g. ``(8,)`` or ``(1, 8, 8)``.
        output_dim: k, the number of outputs per sample (the module returns ``(n, k)``).
        format: ``"json"`` or ``"onnx"``.
        sha256: hex digest of the source bytes (canonical JSON for specs).
        activations: names of the elementwise activations used (for verdict reasons).
        smooth: True iff every op is twice continuously differentiable (ReLU etc. are not).
        nonsmooth_ops: names of the ops that break smoothness (e.g. ``["relu"]``).
        output_activation: the activation applied to the output layer, or ``None`` if linear.
        spec: the validated JSON spec (as a plain dict) for JSON models, else ``None``.
        description: one line for reports, e.g. ``"MLP 8-512-512-1 tanh (ntk)"``.
        metadata: loader facts; ONNX models have ``parameter_sources`` (module parameter name
            -> initializer name).
        notes: warnings about the model that the report's reasons show (e.g. initializers that
            look constant-folded by an exporter).
    """

    module: nn.Module
    input_shape: tuple[int, ...]
    output_dim: int
    format: ModelFormat
    sha256: str
    activations: tuple[str, ...] = ()
    smooth: bool = True
    nonsmooth_ops: tuple[str, ...] = ()
    output_activation: str | None = None
    spec: Mapping[str, Any] | None = None
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def affine_in_params(self) -> bool:
        """True when F is structurally affine in the trainable parameters (then H_F = 0 and
        beta_F = 0 exactly; e.g. last-layer fine-tuning). See :mod:`plcore.models.affine`."""
        from plcore.models.affine import affine_in_trainable_params

        return affine_in_trainable_params(self.module)

    @property
    def n_params(self) -> int:
        """m, the number of trainable parameters."""
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def named_params(self) -> dict[str, Tensor]:
        """The trainable parameters as a name -> tensor dict (detached views)."""
        return {n: p.detach() for n, p in self.module.named_parameters() if p.requires_grad}

    def flat_params(self) -> Tensor:
        """w, all trainable parameters concatenated in ``named_parameters`` order."""
        return torch.cat([p.reshape(-1) for p in self.named_params().values()])

    def unflatten(self, w: Tensor) -> dict[str, Tensor]:
        """Split a flat vector w (length m) into a name -> tensor dict shaped like the params."""
        named = self.named_params()
        sizes = [p.numel() for p in named.values()]
        if sum(sizes) != w.numel():
            raise ValueError(f"flat vector has {w.numel()} entries, the model has {sum(sizes)}")
        # one split (its backward is one concatenation) instead of one slice per parameter
        # (each slice's backward fills a zero vector of length m: 25% of a gradient on C2)
        return {
            name: piece.reshape(p.shape)
            for (name, p), piece in zip(named.items(), torch.split(w, sizes), strict=True)
        }

    def apply(self, params: Mapping[str, Tensor], X: Tensor) -> Tensor:
        """f(w; X) with the given parameters, shape (n, k). Buffers are the module's own."""
        out = functional_call(self.module, dict(params), (X,))
        return out.reshape(X.shape[0], self.output_dim)

    def apply_flat(self, w: Tensor, X: Tensor) -> Tensor:
        """F(w) restricted to inputs X, flattened sample-major: shape (n * k,)."""
        return self.apply(self.unflatten(w), X).reshape(-1)
