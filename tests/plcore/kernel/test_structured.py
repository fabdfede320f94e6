"""The structured kernel equals J J^T from a dense autograd Jacobian on every layer type."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from plcore.errors import OptionsError
from plcore.kernel import (
    KernelMethod,
    kernel_method_choice,
    resolve_kernel_method,
    tangent_kernel,
)
from plcore.kernel.structured import dense_strategy, structured_kernel
from plcore.models.base import Model
from plcore.models.layers import Dense
from tests.plcore.kernel.test_reference import perturbed
from tests.plcore.kernel.toy_models import (
    _model,
    cnn,
    dense_reference_kernel,
    inputs,
    mlp,
    ntk_dense,
    rel_err,
    token_model,
    unsupported_model,
)

MODELS: dict[str, Callable[[], Model]] = {
    "mlp-k1": lambda: mlp(3, [6, 5], 1),
    "mlp-k3-relu": lambda: mlp(4, [7], 3, activation="relu"),
    "mlp-output-activation": lambda: mlp(3, [5], 2, output_activation="sigmoid"),
    "cnn-groups2": lambda: cnn(groups=2),
    "cnn-groups1": lambda: cnn(groups=1, k=1),
    "tokens-rows": lambda: token_model(P=3, d=4, h=5),
    "tokens-pairs": lambda: token_model(P=2, d=12, h=12),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("at_w0", [True, False])
def test_structured_kernel_equals_dense_jacobian_gram(name: str, at_w0: bool) -> None:
    model = MODELS[name]()
    X = inputs(model, 5)
    w = model.flat_params() if at_w0 else perturbed(model)
    K = structured_kernel(model, X, params=None if at_w0 else w)
    assert K.shape == (5 * model.output_dim,) * 2
    assert rel_err(K, dense_reference_kernel(model, X, w)) <= 1e-12


@pytest.mark.parametrize("name", ["cnn-groups2", "tokens-rows"])
def test_structured_kernel_chunks_explicit_gradients_correctly(name: str) -> None:
    model = MODELS[name]()
    X = inputs(model, 5)
    K = structured_kernel(model, X, chunk_size=2)
    assert rel_err(K, dense_reference_kernel(model, X, model.flat_params())) <= 1e-12


def test_dense_strategy_picks_hadamard_pairs_or_rows_by_cost() -> None:
    assert dense_strategy(n=5, k=2, P=1, d_in=100, d_out=100) == "hadamard"
    # token models above: P = 2, d = 12 -> pairs is cheaper; P = 3, d = 4, h = 5 -> rows
    assert dense_strategy(n=5, k=2, P=2, d_in=12, d_out=12) == "pairs"
    assert dense_strategy(n=5, k=2, P=3, d_in=4, d_out=5) == "rows"
    assert dense_strategy(n=5, k=1, P=9, d_in=18, d_out=4) == "rows"  # the first cnn conv
    # pairs would be cheaper but its N^2 P temporaries exceed the budget
    assert dense_strategy(n=2000, k=1, P=16, d_in=512, d_out=512) == "rows"


def test_structured_kernel_skips_frozen_parameters() -> None:
    model = mlp(3, [6], 2)
    first = next(iter(model.module.children()))
    assert isinstance(first, Dense)
    first.weight.requires_grad_(False)
    assert model.n_params == 6 + 2 * 6 + 2
    X = inputs(model, 4)
    K = structured_kernel(model, X)
    assert rel_err(K, dense_reference_kernel(model, X, model.flat_params())) <= 1e-12


def test_structured_kernel_leaves_module_and_hooks_untouched() -> None:
    model = token_model()
    w0 = model.flat_params().clone()
    structured_kernel(model, inputs(model, 3), params=perturbed(model))
    assert torch.equal(model.flat_params(), w0)
    assert all(not mod._forward_hooks for mod in model.module.modules())


def test_auto_picks_structured_for_supported_layers_and_reference_otherwise() -> None:
    assert resolve_kernel_method(mlp(3, [4], 1), "auto") is KernelMethod.STRUCTURED
    assert resolve_kernel_method(cnn(), KernelMethod.AUTO) is KernelMethod.STRUCTURED
    assert resolve_kernel_method(mlp(3, [4], 1), "reference") is KernelMethod.REFERENCE
    choice = kernel_method_choice(unsupported_model(), "auto")
    assert choice.method is KernelMethod.REFERENCE
    assert "'lin.weight' belongs to a Linear layer" in choice.reason


def test_structured_refuses_parameters_of_unknown_layers() -> None:
    model = unsupported_model()
    with pytest.raises(OptionsError, match=r"'lin\.weight' belongs to a Linear"):
        tangent_kernel(model, inputs(model, 2), method="structured")
    with pytest.raises(OptionsError, match="Linear"):
        resolve_kernel_method(model, "structured")


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = ntk_dense(3, 3, g)
        self.b = ntk_dense(3, 1, g)
        self.c = ntk_dense(3, 3, g)
        self.c.weight = self.a.weight  # tied weights: one J column block, two layers

    def forward(self, x: Tensor) -> Tensor:
        return self.b(torch.tanh(self.c(torch.tanh(self.a(x)))))


def test_shared_parameters_fall_back_to_reference_and_stay_exact() -> None:
    model = _model(_Shared(), (3,), 1, "tied")
    choice = kernel_method_choice(model, "auto")
    assert choice.method is KernelMethod.REFERENCE
    assert "shared with 'a.weight'" in choice.reason
    X = inputs(model, 4)
    K = tangent_kernel(model, X)
    assert rel_err(K, dense_reference_kernel(model, X, model.flat_params())) <= 1e-12


class _SamplesOnLastAxis(nn.Module):
    """Transposes the batch onto the feature axis: samples interact inside the Dense layer."""

    def __init__(self, n: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.mix = ntk_dense(n, n, g)
        self.head = ntk_dense(3, 1, g)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.mix(x.T).T)


def test_structured_refuses_layers_that_do_not_see_samples_first() -> None:
    model = _model(_SamplesOnLastAxis(4), (3,), 1, "transposed")
    with pytest.raises(OptionsError, match=r"sample axis first.*shape \(3, 4\) for n = 4"):
        structured_kernel(model, inputs(model, 4))
    assert all(not mod._forward_hooks for mod in model.module.modules())
