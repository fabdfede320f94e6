"""Which parameters a model trains: the ``trainable`` / ``frozen`` options and the parameter list.

Names (CONTRACT.md "Parameterization"): for ONNX models the public name of a parameter is the
graph initializer it holds (``Model.metadata["parameter_sources"]`` maps the module's parameter
names to them); for JSON specs it is the module's own parameter name (``"0.weight"``, ...).

Selection rule of :func:`select_parameters`: start from ``trainable`` (the names matching one of
its patterns) or, when it is None, from the loader's default (``requires_grad`` as loaded); then
remove the names matching one of the ``frozen`` patterns. Patterns are exact names or
:func:`fnmatch.fnmatchcase` globs (``*``, ``?``, ``[...]``). A pattern that matches no parameter,
or a selection that leaves nothing to train, is an :class:`OptionsError`. Freezing is
``requires_grad=False`` on a copy of the module, which every consumer honours: ``Model.n_params``,
``named_params`` / ``flat_params`` (hence the kernels, the Hessian and the probes) and the
structured kernel look only at parameters with ``requires_grad``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from plcore.errors import OptionsError
from plcore.models.base import Model


@dataclass(frozen=True)
class ParameterInfo:
    """One parameter tensor as the report lists it: public name, shape, entries, trainable."""

    name: str
    shape: tuple[int, ...]
    count: int
    trainable: bool


def public_names(model: Model) -> dict[str, str]:
    """Module parameter name -> public name (the initializer for ONNX, itself for JSON specs)."""
    sources = model.metadata.get("parameter_sources", {})
    return {n: str(sources.get(n, n)) for n, _ in model.module.named_parameters()}


def parameter_table(model: Model) -> list[ParameterInfo]:
    """Every parameter tensor of the model (shared ones once), trainable or frozen.

    The shape is the initializer's for ONNX models (``metadata["parameter_shapes"]``; the
    module may store a folded layout of it, e.g. a transposed MatMul weight), the module
    parameter's for JSON specs.
    """
    names = public_names(model)
    shapes = model.metadata.get("parameter_shapes", {})
    out: list[ParameterInfo] = []
    for n, p in model.module.named_parameters():
        shape = tuple(int(d) for d in shapes.get(names[n], p.shape))
        out.append(ParameterInfo(names[n], shape, int(p.numel()), p.requires_grad))
    return out


def _matching(patterns: Sequence[str], names: Sequence[str], option: str) -> set[str]:
    out: set[str] = set()
    for pat in patterns:
        hits = {n for n in names if n == pat or fnmatchcase(n, pat)}
        if not hits:
            shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
            raise OptionsError(
                f"{option} pattern {pat!r} matches no parameter; the parameters are: {shown}"
            )
        out |= hits
    return out


def select_parameters(
    model: Model, *, trainable: Sequence[str] | None = None, frozen: Sequence[str] = ()
) -> Model:
    """The model with the parameters chosen by ``trainable`` / ``frozen`` (module docstring).

    Returns ``model`` itself when both are empty, else a copy (the caller's module is untouched).

    Raises:
        OptionsError: a pattern matches no parameter, or no parameter is left to train.
    """
    if trainable is None and not frozen:
        return model
    names = public_names(model)
    params = dict(model.module.named_parameters())
    public = sorted(set(names.values()))
    if trainable is None:
        chosen = {names[n] for n, p in params.items() if p.requires_grad}
    else:
        chosen = _matching(trainable, public, "trainable")
    chosen -= _matching(frozen, public, "frozen")
    if not chosen:
        raise OptionsError(
            f"no parameter is left to train (trainable={list(trainable or [])!r}, "
            f"frozen={list(frozen)!r})"
        )
    module = copy.deepcopy(model.module)
    for n, p in module.named_parameters():
        p.requires_grad_(names[n] in chosen)
    return dataclasses.replace(model, module=module)
