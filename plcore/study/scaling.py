"""The spec of a study point: the base spec at another width or depth.

Which layers scale (docs/theory.md, "Width study"):

* MLP shorthand: every hidden width becomes W (``widths: [W] * depth``); input and output stay.
* Layer list: every ``linear`` (``out``) and ``conv2d`` (``out_channels``) layer scales, inside
  residual blocks too, EXCEPT the last one of the top-level list (it produces the output). The
  sizes scale proportionally, ``max(1, round(size * W / W_base))`` with ``W_base`` the largest
  scaled size of the base spec, so that the reported width W is the largest hidden size and equal
  base sizes stay equal (a residual block keeps its shape when its outer and inner layers had the
  same size). A block that adds a scaled layer to an unscaled input no longer fits: the spec
  validation then refuses the point with the shapes in the message.
* Depth (MLP shorthand only): ``widths: [W] * depth`` with W the given width or the base spec's
  largest hidden width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from plcore.errors import ModelSpecError, OptionsError
from plcore.models.spec import validate_spec
from plcore.models.spec_schema import MLPSpec

MAX_STUDY_VALUES: Final = 16
"""At most this many widths (or depths) in one study."""
MAX_STUDY_SEEDS: Final = 8
"""At most this many initialisation seeds per width."""
MAX_STUDY_WIDTH: Final = 100_000
"""The spec schema's cap on a single hidden width."""
MAX_STUDY_DEPTH: Final = 32
"""At most this many hidden layers in a depth study."""

_SCALED: Final = {"linear": "out", "conv2d": "out_channels"}


def check_values(values: Sequence[int], what: str, upper: int) -> list[int]:
    """Distinct sorted positive integers (``what`` names them in errors: "widths", "depths").

    Raises:
        OptionsError: empty, too many, a non-integer, < 1 or > ``upper``.
    """
    vals = list(values)
    if not vals:
        raise OptionsError(f"{what} must not be empty: give at least one")
    bad = [v for v in vals if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= upper]
    if bad:
        raise OptionsError(f"{what} must be integers from 1 to {upper}, got {bad}")
    out = sorted(set(vals))
    if len(out) > MAX_STUDY_VALUES:
        raise OptionsError(f"at most {MAX_STUDY_VALUES} {what} per study, got {len(out)}")
    return out


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """Distinct initialisation seeds in the given order (0 <= seed < 2^63)."""
    vals = list(seeds)
    if not vals:
        raise OptionsError("seeds must not be empty: give at least one")
    bad = [s for s in vals if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**63]
    if bad:
        raise OptionsError(f"seeds must be integers from 0 to 2^63 - 1, got {bad}")
    out = list(dict.fromkeys(vals))
    if len(out) > MAX_STUDY_SEEDS:
        raise OptionsError(f"at most {MAX_STUDY_SEEDS} seeds per study, got {len(out)}")
    return out


def base_width(spec: Mapping[str, Any]) -> int:
    """The largest scalable hidden size of the spec (the width the study varies).

    Raises:
        ModelSpecError: invalid spec, or nothing to scale (an MLP without hidden layers, a layer
            list whose only linear / conv2d layer is the output layer).
    """
    parsed = validate_spec(spec)
    if isinstance(parsed, MLPSpec):
        if not parsed.widths:
            raise ModelSpecError(
                "the spec has no hidden layer (widths: []): there is no width to scale"
            )
        return max(parsed.widths)
    sizes = _scalable_sizes(parsed.model_dump(mode="json")["layers"])
    if not sizes:
        raise ModelSpecError(
            "the layer list has no hidden linear or conv2d layer (only the output layer): "
            "there is no width to scale"
        )
    return max(sizes)


def hidden_depth(spec: Mapping[str, Any]) -> int | None:
    """Number of hidden layers of an MLP spec (None for a layer list)."""
    parsed = validate_spec(spec)
    return len(parsed.widths) if isinstance(parsed, MLPSpec) else None


def spec_at(
    spec: Mapping[str, Any], *, width: int, seed: int, depth: int | None = None
) -> dict[str, Any]:
    """The base spec with hidden width ``width`` (and ``depth`` hidden layers, MLP only) and
    initialisation seed ``seed``, validated (see the module docstring for what scales).

    Raises:
        ModelSpecError: nothing to scale, a depth for a layer list, or the scaled spec is
            invalid (over the parameter cap, shapes that no longer fit).
    """
    w_base = base_width(spec)
    data = validate_spec(spec).model_dump(mode="json")
    data["seed"] = seed
    if data["type"] == "mlp":
        n = len(data["widths"]) if depth is None else depth
        data["widths"] = [width] * n
    else:
        if depth is not None:
            raise ModelSpecError("a depth study needs the MLP shorthand ('type': 'mlp')")
        top = data["layers"]
        last = _last_scalable(top)
        for i, item in enumerate(top):
            if i != last:
                _scale(item, width / w_base)
    try:
        return validate_spec(data).model_dump(mode="json")
    except ModelSpecError as exc:
        raise ModelSpecError(f"at width {width}: {exc}") from None


def scaling_note(spec: Mapping[str, Any]) -> str:
    """One sentence for the result: which layers the study scales."""
    if validate_spec(spec).type == "mlp":
        return "MLP shorthand: every hidden width set to W (input and output layers fixed)"
    return (
        "layer list: the out / out_channels of every linear and conv2d layer except the last "
        "top-level one (the output layer), scaled by W / W_base (rounded, at least 1), W_base "
        "= the largest of them in the base spec"
    )


def _last_scalable(items: list[dict[str, Any]]) -> int | None:
    idx = [i for i, item in enumerate(items) if item["type"] in _SCALED]
    return idx[-1] if idx else None


def _scalable_sizes(items: list[dict[str, Any]]) -> list[int]:
    last = _last_scalable(items)
    return [s for i, item in enumerate(items) if i != last for s in _sizes(item)]


def _sizes(item: dict[str, Any]) -> list[int]:
    if item["type"] in _SCALED:
        return [int(item[_SCALED[item["type"]]])]
    if item["type"] == "residual":
        return [s for inner in item["layers"] for s in _sizes(inner)]
    return []


def _scale(item: dict[str, Any], factor: float) -> None:
    if item["type"] in _SCALED:
        key = _SCALED[item["type"]]
        item[key] = max(1, round(int(item[key]) * factor))
    elif item["type"] == "residual":
        for inner in item["layers"]:
            _scale(inner, factor)


def spec_from_json(raw: bytes | str) -> dict[str, Any]:
    """A JSON spec file's object (duplicate keys refused, like :func:`plcore.load_model`).

    Raises:
        ModelFormatError: not JSON (or an ONNX file: a study rebuilds the spec at each width).
        ModelSpecError: JSON that is not an object.
    """
    from plcore.errors import ModelFormatError
    from plcore.json_text import loads_strict

    try:
        spec = loads_strict(raw)
    except ValueError as exc:
        raise ModelFormatError(
            f"a study needs a JSON model spec (it rebuilds the model at each width); this is not "
            f"valid JSON: {exc}"
        ) from exc
    if not isinstance(spec, dict):
        raise ModelSpecError(f"model spec must be a JSON object, got {type(spec).__name__}")
    return spec
