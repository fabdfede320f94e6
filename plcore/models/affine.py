"""A structural proof that F is affine in the trainable parameters (then H_F = 0, beta_F = 0).

Last-layer fine-tuning (every layer but the last frozen) makes the model linear in its
trainable parameters: f(w; x) = s W phi(x) + t b with phi(x) fixed. Then F(w) = A w + c, its
Hessian tensor H_F vanishes identically and beta_F = 0 exactly, on every ball, in floating point
too (no number is estimated: the claim is about the computation graph).

The check propagates a degree through the module, value by value (:func:`_step_degree`):

* ``CONST`` - does not depend on the trainable parameters (the input, buffers, frozen parameters);
* ``AFFINE`` - an affine function of them;
* ``NONLINEAR`` - anything else (or unknown).

A trainable parameter is ``AFFINE``; a parameterized layer (Dense, Conv2d, Scale) with a trainable
weight multiplies it by its input, which must be ``CONST``; a Bias adds. Parameter-free steps
that are linear in their inputs (layout ops, Add / Sub, Mul / Div / MatMul with at most one
non-constant factor (and a constant divisor), Concat, sums and means, average pooling, padding,
slicing, gathering with constant indices, the affine BatchNormalization with fixed statistics)
keep the largest degree of their inputs; every other step (activations, LayerNorm, Softmax, Pow,
Exp, ...) with a non-constant input is ``NONLINEAR``. Unknown modules are ``NONLINEAR`` when
they hold a trainable parameter or get a non-constant input, so the check can only err towards
"not affine". It understands the ONNX interpreter (:class:`OnnxGraphModule`) and
``nn.Sequential`` chains (JSON specs).
"""

from __future__ import annotations

from torch import nn

from plcore.models import onnx_ops as ops
from plcore.models.layers import Activation, Bias, Conv2d, Dense, Scale
from plcore.models.onnx_graph import OnnxGraphModule
from plcore.models.onnx_layout import LAYOUT_ONLY
from plcore.models.onnx_params import ParamRef

CONST, AFFINE, NONLINEAR = 0, 1, 2

_LINEAR_STEPS = (
    *LAYOUT_ONLY,
    nn.Identity,
    nn.Flatten,
    ops.Concat,
    ops.Reduce,
    ops.AvgPool2d,
    ops.Pad,
    ops.Slice,
    ops.Expand,
    ops.BatchNormFixed,
)


def _trainable(mod: nn.Module, name: str) -> bool:
    p = getattr(mod, name, None)
    return isinstance(p, nn.Parameter) and p.requires_grad


def _layer_degree(mod: nn.Module, h: int) -> int:
    """Dense / Conv2d / Scale: weight * h (+ bias); Bias: h + bias."""
    multiplies = not isinstance(mod, Bias) and _trainable(mod, "weight")
    adds = _trainable(mod, "bias")
    if multiplies and h != CONST:
        return NONLINEAR
    if multiplies or adds:
        return max(h, AFFINE)
    return h


def _product_degree(degrees: list[int]) -> int:
    """A product of factors: affine only when at most one factor is non-constant."""
    moving = [d for d in degrees if d != CONST]
    if len(moving) > 1:
        return NONLINEAR
    return moving[0] if moving else CONST


def _step_degree(mod: nn.Module, ins: list[int]) -> int:
    top = max(ins, default=CONST)
    if isinstance(mod, ParamRef):
        return AFFINE if mod.weight.requires_grad else CONST
    if isinstance(mod, Dense | Conv2d | Scale | Bias):
        return _layer_degree(mod, ins[0])
    if any(p.requires_grad for p in mod.parameters()):
        return NONLINEAR
    if isinstance(mod, ops.ShapeOf):
        return CONST  # the shape of a value never depends on the parameters' values
    if top == CONST or isinstance(mod, _LINEAR_STEPS):
        return top
    if isinstance(mod, ops.GlobalPool):
        return top if mod.kind == "avg" else NONLINEAR
    if isinstance(mod, Activation):
        return top if mod.name == "identity" else NONLINEAR
    if isinstance(mod, ops.Unary):
        return top if mod.kind in ("neg", "identity") else NONLINEAR
    if isinstance(mod, ops.Cast):
        return top if mod.to_float else NONLINEAR
    if isinstance(mod, ops.Binary):
        if mod.kind in ("add", "sub"):
            return top
        if mod.kind == "mul":
            return _product_degree(ins)
        if mod.kind == "div":
            return ins[0] if ins[1] == CONST else NONLINEAR
        return NONLINEAR
    if isinstance(mod, ops.MatMul):
        return _product_degree(ins)
    if isinstance(mod, ops.GemmData):
        ab = _product_degree(ins[:2])
        return max(ab, *ins[2:]) if ab != NONLINEAR else NONLINEAR
    if isinstance(mod, ops.Gather):
        return ins[0] if ins[1] == CONST else NONLINEAR
    if isinstance(mod, ops.Where):
        return max(ins[1:]) if ins[0] == CONST else NONLINEAR
    return NONLINEAR


def _graph_degree(module: OnnxGraphModule) -> int:
    env: dict[str, int] = {name: CONST for name, _ in module.const_keys}
    env[module.input_name] = CONST
    for key, ins, out in module.wiring:
        env[out] = _step_degree(module.steps[key], [env[i] for i in ins])
    return env[module.output_name]


def _module_degree(mod: nn.Module, h: int) -> int:
    if isinstance(mod, nn.Sequential):
        for child in mod.children():
            h = _module_degree(child, h)
        return h
    return _step_degree(mod, [h])


def affine_in_trainable_params(module: nn.Module) -> bool:
    """True when the module's output is (structurally) affine in its trainable parameters.

    False means "not shown", never "shown non-affine". See the module docstring for the rules.
    """
    if isinstance(module, OnnxGraphModule):
        return _graph_degree(module) != NONLINEAR
    return _module_degree(module, CONST) != NONLINEAR
