"""Every kernel method equals J J^T of a dense autograd Jacobian on the ONNX and JSON-spec zoos.

Acceptance criterion of the kernel: ||K - K_ref||_F / ||K_ref||_F <= 1e-10 in float64, at w0
and at w0 + 0.1 * noise, where K_ref comes from ``torch.autograd.functional.jacobian`` of the
flat map w -> F(w) (no code path of plcore.kernel). The zoo modules are imported inside the
tests so that this file collects even while a zoo is being written.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from plcore.kernel import KernelMethod, kernel_method_choice, tangent_kernel
from plcore.models.base import Model
from tests.plcore.kernel.toy_models import dense_reference_kernel, rel_err

METHODS = ["auto", "reference", "structured"]
TOL = 1e-10


def _onnx_names() -> list[str]:
    # A broken zoo must not stop this file from collecting: the test with the placeholder
    # name then rebuilds the zoo and fails with the zoo's own error.
    try:
        from tests.plcore.models.onnx_zoo import zoo

        return [z.name for z in zoo()]
    except Exception as exc:
        return [f"<onnx zoo unavailable: {type(exc).__name__}>"]


def _spec_names() -> list[str]:
    try:
        from tests.plcore.models.spec_zoo import spec_zoo

        return [name for name, _, _ in spec_zoo()]
    except Exception as exc:
        return [f"<spec zoo unavailable: {type(exc).__name__}>"]


def _check_all_methods(model: Model, X: Tensor, seed: int) -> None:
    w0 = model.flat_params()
    g = torch.Generator().manual_seed(seed)
    w1 = w0 + 0.1 * torch.randn(w0.shape, generator=g, dtype=torch.float64)
    choice = kernel_method_choice(model, "auto")
    for w in (w0, w1):
        K_ref = dense_reference_kernel(model, X, w)
        assert float(torch.linalg.norm(K_ref)) > 0
        for method in METHODS:
            if method == "structured" and choice.method is not KernelMethod.STRUCTURED:
                continue  # auto already fell back to reference, with its reason
            K = tangent_kernel(model, X, method, params=w)
            assert rel_err(K, K_ref) <= TOL, (method, rel_err(K, K_ref))


def _inputs(shape: tuple[int, ...], n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize("name", _onnx_names())
def test_every_kernel_method_matches_dense_jacobian_on_onnx_zoo(name: str) -> None:
    from plcore.models.onnx_import import load_onnx_model
    from tests.plcore.models.onnx_zoo import zoo

    entry = {z.name: z for z in zoo()}[name]
    model = load_onnx_model(entry.onnx_bytes)
    X = _inputs(tuple(entry.input_shape), entry.n_samples_hint, seed=len(name))
    _check_all_methods(model, X, seed=1)


@pytest.mark.parametrize("name", _spec_names())
def test_every_kernel_method_matches_dense_jacobian_on_spec_zoo(name: str) -> None:
    from plcore.models.spec import load_spec_model
    from tests.plcore.models.spec_zoo import spec_zoo

    entries: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {
        n: (spec, shape) for n, spec, shape in spec_zoo()
    }
    spec, shape = entries[name]
    model = load_spec_model(spec)
    X = _inputs(shape, 5, seed=len(name))
    _check_all_methods(model, X, seed=2)


def test_auto_runs_structured_on_every_spec_model() -> None:
    from plcore.models.spec import load_spec_model
    from tests.plcore.models.spec_zoo import spec_zoo

    for name, spec, _ in spec_zoo():
        choice = kernel_method_choice(load_spec_model(spec), "auto")
        assert choice.method is KernelMethod.STRUCTURED, (name, choice.reason)
