"""A model as a graph of primitive steps, the form the proven bounds of
:mod:`plcore.estimate.analytic` are computed on.

Both loaders' modules are read into the same list of :class:`Step` objects, so that a JSON spec
and its ONNX export get the same bound (a Dense layer with weight_scale s is the weight step of
scale s; an exported ``x @ W.T / c`` is the weight step of scale 1 followed by a scalar map 1/c:
the recursions of the bound are compositional, so both give the same numbers up to rounding).

Steps (each takes the values of earlier steps; step 0 is the input):

* ``weight``  y = s A(W) x   (A(W) = x W^T on the last axis, or conv2d(x, W); W trainable)
* ``bias``    y = x + t bc(b)   (bc: the layer's broadcast of b against x)
* ``scale``   y = x * s bc(g)
* ``act``     elementwise phi, twice differentiable
* ``map``     a fixed affine map y = P x + c with known norms (pooling, layout, padding with 0,
  multiplication by a constant, a constant shift, batch normalisation with stored statistics)
* ``add``     y = x1 + x2 (residual connections)
* ``concat``  y = (x1, ..., xm) joined along a non-batch axis (ONNX Concat of computed values)
* ``norm``    y = (x - mean) / sqrt(var + eps) over trailing axes (LayerNorm, no affine part)

Anything else (ReLU, max pooling, a product of two computed values, softmax, attention, shared
weights, ...) makes :func:`build_graph` return the reason instead of a graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn

from plcore.models import onnx_layout as layout
from plcore.models import onnx_ops as ops
from plcore.models.base import Model
from plcore.models.layers import Activation, Bias, Conv2d, Dense, Scale
from plcore.models.onnx_graph import OnnxGraphModule

Fun = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class MapNorms:
    """Norm facts of a fixed linear map P (the linear part of a ``map`` step).

    Attributes:
        op: >= ||P||_2 (per sample, as a map between flattened per-sample values).
        inf: >= ||P^T||_{inf -> inf} = the largest absolute column sum of P (bounds the adjoint
            in the infinity norm).
        abs_op: >= || |P| ||_2 (the entrywise absolute value: rounding of the evaluation).
        terms: the longest sum one output entry of P x is (for the rounding bound), 0 when the
            map only moves or copies entries (exact).
    """

    op: float
    inf: float
    abs_op: float
    terms: int


@dataclass(frozen=True)
class Step:
    """One step of the graph (module docstring).

    ``module`` is the layer holding the trainable tensor (``weight``, ``bias``, ``scale``) or the
    Activation; ``attr`` the tensor's attribute on it; ``scale`` s or t; ``fn`` evaluates the
    step given its input(s) (all of them, in order, for ``concat``) and, for trainable steps, the
    tensor; ``shift`` is the constant part of a ``map`` step (broadcast against one sample; None
    when linear); ``axis`` the first normalised axis of a ``norm`` step (of the batched value,
    negative: from the end); ``eps`` its epsilon; ``where`` names the source layer.
    """

    kind: str
    inputs: tuple[int, ...]
    where: str
    module: nn.Module | None = None
    attr: str = ""
    scale: float = 1.0
    fn: Callable[..., Tensor] | None = None
    norms: MapNorms | None = None
    shift: Tensor | None = None
    axis: int = 0
    eps: float = 0.0


@dataclass
class Graph:
    """Steps in topological order; ``steps[0]`` is the input, ``steps[-1]`` the output."""

    steps: list[Step] = field(default_factory=list)

    def add(self, step: Step) -> int:
        self.steps.append(step)
        return len(self.steps) - 1


class Refused(Exception):
    """The model has a step outside the supported set (the message says which and why)."""


IDENTITY = MapNorms(1.0, 1.0, 1.0, 0)


def _pool_overlap(kernel: int, stride: int, dilation: int = 1) -> int:
    """max over input positions of the number of kernel offsets that read it along one axis:
    offsets a with dilation * a = position (mod stride), maximised over the residue."""
    counts = [0] * stride
    for a in range(kernel):
        counts[(dilation * a) % stride] += 1
    return max(counts)


def conv_overlap(m: Conv2d) -> int:
    """N_ov: how many (output position, kernel offset) pairs read one input entry, at most."""
    kh, kw = int(m.weight.shape[2]), int(m.weight.shape[3])
    sh, sw = m.stride
    dh, dw = m.dilation
    return _pool_overlap(kh, int(sh), int(dh)) * _pool_overlap(kw, int(sw), int(dw))


def _avgpool_norms(
    kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int], exclude: bool
) -> Callable[[Tensor], MapNorms]:
    """Norms of y_p = w_p sum of the window of p: ||y_p||^2 <= n_p w_p^2 sum_window x^2 (n_p real
    entries in the window), and each input entry is in at most N_ov windows, so
    ||P||^2 <= N_ov max_p n_p w_p^2; the column sums of P are at most N_ov max_p w_p. The counts
    n_p come from pooling a tensor of ones (small integers: exact in floating point)."""
    kh, kw = kernel
    n_ov = _pool_overlap(kh, stride[0]) * _pool_overlap(kw, stride[1])

    def norms(x: Tensor) -> MapNorms:
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=torch.float64)
        counts = Fn.avg_pool2d(Fn.pad(ones, pads), kernel, stride) * (kh * kw)
        counts = torch.round(counts)
        w = 1.0 / counts if exclude else torch.full_like(counts, 1.0 / (kh * kw))
        op = math.sqrt(n_ov * float((counts * w * w).max()))
        inf = n_ov * float(w.max())
        return MapNorms(op * (1 + 1e-15), inf * (1 + 1e-15), op * (1 + 1e-15), kh * kw + 1)

    return norms


# ----- sources ------------------------------------------------------------------------------


class _Builder:
    """Reads modules into a :class:`Graph`. Steps whose norms need the value's shape (pooling)
    get them in :func:`plcore.estimate.analytic` from the centre pass (``norms_of``)."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.graph.add(Step("input", (), "input"))
        self.norms_of: dict[int, Callable[[Tensor], MapNorms]] = {}

    def step(self, step: Step) -> int:
        return self.graph.add(step)

    def module(self, m: nn.Module, x: int, where: str) -> int:
        """Steps of one module of a JSON layer chain applied to value ``x``."""
        from plcore.models.spec_build import GlobalAvgPool, LayerNorm, Residual

        if isinstance(m, nn.Sequential):
            for name, child in m._modules.items():
                if child is not None:
                    x = self.module(child, x, f"{where}.{name}" if where else name)
            return x
        if isinstance(m, nn.Identity):
            return x
        if isinstance(m, Dense | Conv2d):
            return self.layer(m, x, where)
        if isinstance(m, Bias | Scale | Activation):
            return self.elementwise(m, x, where)
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise Refused(f"{where}: Flatten over axes other than 1..-1")
            return self.step(Step("map", (x,), where, fn=lambda v: v.flatten(1), norms=IDENTITY))
        if isinstance(m, nn.AvgPool2d):
            k = _pair(m.kernel_size)
            s = _pair(m.stride if m.stride is not None else m.kernel_size)
            p = _pair(m.padding)
            if m.ceil_mode:
                raise Refused(f"{where}: AvgPool2d with ceil_mode")
            pads = (p[1], p[1], p[0], p[0])
            return self.avgpool(x, where, k, s, pads, exclude=not m.count_include_pad)
        if isinstance(m, GlobalAvgPool):
            return self.global_avg(x, where, keepdim=False)
        if isinstance(m, LayerNorm):
            h = self.step(Step("norm", (x,), where, axis=-len(m.dims), eps=m.eps))
            if m.scale is not None:
                h = self.elementwise(m.scale, h, f"{where}.scale")
            if m.shift is not None:
                h = self.elementwise(m.shift, h, f"{where}.shift")
            return h
        if isinstance(m, Residual):
            b = self.module(m.block, x, f"{where}.block")
            return self.step(Step("add", (x, b), where))
        raise Refused(f"{where}: {_describe(m)} is outside the supported layers")

    def layer(self, m: Dense | Conv2d, x: int, where: str) -> int:
        h = self.step(
            Step("weight", (x,), where, m, "weight", m.weight_scale, partial(_apply_weight, m))
        )
        if m.bias is not None:
            h = self.step(
                Step("bias", (h,), f"{where}.bias", m, "bias", m.bias_scale, partial(_add_bias, m))
            )
        return h

    def elementwise(self, m: nn.Module, x: int, where: str) -> int:
        if isinstance(m, Bias):
            return self.step(
                Step("bias", (x,), where, m, "bias", m.scale, lambda v, b, t=m.scale: v + t * b)
            )
        if isinstance(m, Scale):
            return self.step(
                Step(
                    "scale", (x,), where, m, "weight", m.scale, lambda v, g, s=m.scale: v * (s * g)
                )
            )
        assert isinstance(m, Activation)
        if not m.info.twice_differentiable or m.info.d2_sup is None:
            raise Refused(f"{where}: activation {m.name!r} is not twice differentiable")
        return self.step(Step("act", (x,), where, m, fn=m))

    def avgpool(
        self,
        x: int,
        where: str,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        pads: tuple[int, int, int, int],
        *,
        exclude: bool,
    ) -> int:
        mod = ops.AvgPool2d(kernel, stride, pads, exclude)
        i = self.step(Step("map", (x,), where, fn=mod))
        self.norms_of[i] = _avgpool_norms(kernel, stride, pads, exclude)
        return i

    def global_avg(self, x: int, where: str, *, keepdim: bool) -> int:
        def fn(v: Tensor) -> Tensor:
            return v.mean(dim=tuple(range(2, v.ndim)), keepdim=keepdim)

        def norms(v: Tensor) -> MapNorms:
            area = math.prod(v.shape[2:])
            op = 1.0 / math.sqrt(area) * (1 + 1e-15)
            return MapNorms(op, 1.0 / area * (1 + 1e-15), op, area + 1)

        i = self.step(Step("map", (x,), where, fn=fn))
        self.norms_of[i] = norms
        return i

    # ----- ONNX ---------------------------------------------------------------------------
    def onnx(self, g: OnnxGraphModule) -> int:
        consts = {name: getattr(g, key) for name, key in g.const_keys}
        at: dict[str, int] = {g.input_name: 0}
        for key, ins, out in g.wiring:
            step = g.steps[key]
            moving = [i for i in ins if i not in consts]
            unknown = [i for i in moving if i not in at]
            if unknown:
                raise Refused(f"ONNX step {key} reads {unknown[0]!r}, which is not computed")
            where = f"ONNX step {key}"
            if isinstance(step, ops.Binary) and len(moving) == 2:
                a, b = at[moving[0]], at[moving[1]]
                if step.kind == "add":
                    at[out] = self.step(Step("add", (a, b), where))
                elif step.kind == "sub":
                    neg = self.step(
                        Step("map", (b,), f"{where} (negation)", fn=torch.neg, norms=IDENTITY)
                    )
                    at[out] = self.step(Step("add", (a, neg), where))
                else:
                    raise Refused(f"{where}: {step.kind} of two computed values is not covered")
                continue
            if isinstance(step, ops.Concat):
                if len(moving) != len(ins):
                    raise Refused(f"{where}: Concat of a computed value with a constant")
                if step.axis == 0:  # a negative axis that lands on 0 fails the centre's check
                    raise Refused(f"{where}: Concat along the sample axis")
                at[out] = self.step(Step("concat", tuple(at[i] for i in ins), where, fn=step))
                continue
            if len(moving) != 1:
                raise Refused(
                    f"{where} ({type(step).__name__}) takes {len(moving)} computed values"
                )
            x = at[moving[0]]
            if isinstance(step, ops.Binary):
                at[out] = self.binary_const(step, ins, moving[0], consts, x, where)
            elif isinstance(step, Dense | Conv2d):
                at[out] = self.layer(step, x, where)
            elif isinstance(step, Bias | Scale | Activation):
                at[out] = self.elementwise(step, x, where)
            elif isinstance(step, ops.AvgPool2d):
                at[out] = self.avgpool(
                    x, where, step.kernel, step.stride, step.pads, exclude=step.exclude_pad
                )
            elif isinstance(step, ops.GlobalPool) and step.kind == "avg":
                at[out] = self.global_avg(x, where, keepdim=True)
            elif isinstance(step, ops.Pad) and step.value == 0.0:
                at[out] = self.step(Step("map", (x,), where, fn=step, norms=IDENTITY))
            elif isinstance(step, ops.BatchNormFixed):
                at[out] = self.batchnorm(step, x, where)
            elif isinstance(step, ops.LayerNormPlain):
                at[out] = self.step(Step("norm", (x,), where, axis=step.axis, eps=step.eps))
            elif isinstance(step, layout.LAYOUT_ONLY):
                if isinstance(step, layout.Transpose) and (step.perm is None or step.perm[0] != 0):
                    raise Refused(f"{where}: a transpose that moves the batch axis")
                const_args = [consts[i] for i in ins if i in consts]
                at[out] = self.step(
                    Step(
                        "map",
                        (x,),
                        where,
                        fn=lambda v, s=step, c=const_args: s(v, *c),
                        norms=IDENTITY,
                    )
                )
            else:
                raise Refused(f"{where}: {_describe(step)} is outside the supported layers")
        if g.output_name not in at:
            raise Refused("the ONNX output is not computed from the input")
        return at[g.output_name]

    def binary_const(
        self,
        step: ops.Binary,
        ins: tuple[str, ...],
        moving: str,
        consts: dict[str, Tensor],
        x: int,
        where: str,
    ) -> int:
        other = next(i for i in ins if i != moving)
        c = consts[other]
        if not c.is_floating_point():
            raise Refused(f"{where}: a non-float constant")
        c = c.detach().to(torch.float64)
        first = ins[0] == other
        kind = step.kind
        if kind == "div" and first:
            raise Refused(f"{where}: divides by the computed value")
        if kind in ("mul", "div"):
            factor = c.abs().max() if kind == "mul" else (1.0 / c.abs()).max()
            f = float(factor) * (1.0 + 4e-16)
            norms = MapNorms(f, f, f, 1)
            return self.step(
                Step(
                    "map",
                    (x,),
                    where,
                    fn=partial(_bin, step, c=c, const_first=first),
                    norms=norms,
                )
            )
        if kind in ("add", "sub"):
            shift = -c if kind == "sub" and not first else c
            norms = MapNorms(1.0, 1.0, 1.0, 1)
            return self.step(
                Step(
                    "map",
                    (x,),
                    where,
                    fn=partial(_bin, step, c=c, const_first=first),
                    norms=norms,
                    shift=shift,
                )
            )
        raise Refused(f"{where}: {kind} with a constant is not covered")

    def batchnorm(self, m: ops.BatchNormFixed, x: int, where: str) -> int:
        inv = 1.0 / torch.sqrt(m.running_var.to(torch.float64) + m.eps)
        f = float(inv.max()) * (1.0 + 8e-16)
        shift = -(m.running_mean.to(torch.float64) * inv)
        return self.step(
            Step("map", (x,), where, fn=m, norms=MapNorms(f, f, f, 3), shift=shift * (1 + 8e-16))
        )


def _apply_weight(m: Dense | Conv2d, v: Tensor, W: Tensor) -> Tensor:
    """s A(W) v with the layer's own geometry (W given: the centre's value)."""
    if isinstance(m, Dense):
        return m.weight_scale * (v @ W.T)
    return m.weight_scale * Fn.conv2d(v, W, None, m.stride, m.padding, m.dilation, m.groups)


def _add_bias(m: Dense | Conv2d, v: Tensor, b: Tensor) -> Tensor:
    """v + t b, b on the last axis (Dense) or the channel axis (Conv2d)."""
    shape = (-1,) if isinstance(m, Dense) else (-1, 1, 1)
    return v + m.bias_scale * b.reshape(shape)


def _bin(step: ops.Binary, v: Tensor, c: Tensor, const_first: bool) -> Tensor:
    return step(c, v) if const_first else step(v, c)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _describe(m: nn.Module) -> str:
    name = type(m).__name__
    extra = getattr(m, "kind", None) or getattr(m, "name", None)
    return f"{name} ({extra})" if isinstance(extra, str) else name


def build_graph(model: Model) -> tuple[Graph, dict[int, Callable[[Tensor], MapNorms]]]:
    """The graph of ``model`` and the shape-dependent norms of its pooling steps.

    Raises:
        Refused: a step outside the supported set (message: which, where, why).
    """
    b = _Builder()
    module = model.module
    if isinstance(module, OnnxGraphModule):
        out = b.onnx(module)
    elif isinstance(module, nn.Sequential):
        out = b.module(module, 0, "")
    else:
        raise Refused(f"{type(module).__name__} is neither a layer chain nor an ONNX graph")
    if out != len(b.graph.steps) - 1:
        raise Refused("the output is not the last step of the graph")
    if not any(s.kind == "weight" for s in b.graph.steps):
        raise Refused("no weight layer")
    return b.graph, b.norms_of
