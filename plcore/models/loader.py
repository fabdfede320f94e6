"""`load_model`: one entry point for JSON specs and ONNX bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from plcore.errors import ModelFormatError
from plcore.json_text import loads_strict
from plcore.models.base import Model

ModelSourceFormat = Literal["json", "onnx"]


def sniff_model_format(source: bytes | str | Mapping[str, Any]) -> ModelSourceFormat:
    """Guess the format: a mapping or bytes that start with '{' are JSON, the rest ONNX."""
    if isinstance(source, Mapping):
        return "json"
    raw = source.encode() if isinstance(source, str) else source
    return "json" if raw.lstrip()[:1] == b"{" else "onnx"


def load_model(
    source: bytes | str | Mapping[str, Any],
    format: ModelSourceFormat | None = None,
    *,
    weights: bytes | None = None,
    dtype_check: bool = True,
    trainable: Sequence[str] | None = None,
    frozen: Sequence[str] = (),
) -> Model:
    """Load a model from ONNX bytes or a JSON spec (dict, JSON text or JSON bytes).

    Args:
        source: ONNX protobuf bytes, or a JSON model spec.
        format: ``"json"`` or ``"onnx"``; guessed from the content when ``None``.
        weights: optional explicit weights for a JSON spec (.safetensors or .npz bytes).
        dtype_check: kept for API stability; models are always converted to float64.
        trainable: parameters to train (names or glob patterns: ONNX initializer names, or the
            module's parameter names for JSON specs); None keeps the loader's default.
        frozen: parameters not to train (names or glob patterns), applied after ``trainable``.
            See :func:`plcore.models.params.select_parameters`.

    Raises:
        ModelFormatError, ModelSpecError, UnsupportedOperatorError, UnsafeModelError,
        OptionsError (a ``trainable`` / ``frozen`` pattern that matches nothing, or nothing left
        to train).
    """
    from plcore.models.params import select_parameters

    model = _load(source, format, weights)
    return select_parameters(model, trainable=trainable, frozen=frozen)


def _load(
    source: bytes | str | Mapping[str, Any],
    format: ModelSourceFormat | None,
    weights: bytes | None,
) -> Model:
    fmt = format or sniff_model_format(source)
    if fmt == "json":
        from plcore.models.spec import load_spec_model

        if isinstance(source, Mapping):
            spec: Any = source
        else:
            try:
                spec = loads_strict(source)
            except ValueError as exc:  # not JSON, not UTF-8, a key twice, nested too deeply
                raise ModelFormatError(f"model spec is not valid JSON: {exc}") from exc
        return load_spec_model(spec, weights=weights)
    if fmt == "onnx":
        from plcore.models.onnx_import import load_onnx_model

        if isinstance(source, Mapping):
            raise ModelFormatError("format='onnx' needs bytes, got a mapping")
        raw = source.encode() if isinstance(source, str) else source
        return load_onnx_model(raw)
    raise ModelFormatError(f"unknown model format {format!r}; use 'json' or 'onnx'")
