"""The public names of CONTRACT.md resolve to the documented callables, however often imported."""

from __future__ import annotations

import importlib

import plcore


def test_contract_names_are_functions_even_after_submodule_imports() -> None:
    importlib.import_module("plcore.certification")
    importlib.import_module("plcore.kernel")
    importlib.import_module("plcore.data")
    from plcore import CertifyOptions, certify, load_dataset, load_model, tangent_kernel

    for fn in (certify, load_dataset, load_model, tangent_kernel):
        assert callable(fn) and not isinstance(fn, type(plcore)), fn
    assert plcore.certify is certify
    assert CertifyOptions().budget == "standard"


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        plcore.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
