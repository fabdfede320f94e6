"""Model loading: JSON specs and ONNX, both into :class:`plcore.models.base.Model`."""

from plcore.models.base import Model

__all__ = ["Model"]
