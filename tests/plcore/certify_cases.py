"""Problems and an INDEPENDENT gradient-descent check shared by the certify tests.

The GD loop here is plain torch autograd on the sum loss 1/2 ||F(w) - y||^2, written without any
code from plcore.certificate, so that a certificate is checked against a second implementation.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from plcore.dataset import Dataset
from plcore.models.base import Model
from plcore.models.spec import load_spec_model
from plcore.report.schema import Report


def dataset(X: torch.Tensor, y: torch.Tensor, name: str = "test") -> Dataset:
    digest = hashlib.sha256(X.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
    return Dataset(X=X, y=y.reshape(X.shape[0], -1), sha256=digest, name=name)


def linear_spec(d: int) -> dict[str, Any]:
    return {
        "type": "mlp",
        "input_dim": d,
        "widths": [],
        "output_dim": 1,
        "activation": "identity",
        "bias": False,
        "parameterization": "standard",
    }


def ntk_tanh_spec(width: int, d: int = 32) -> dict[str, Any]:
    return {
        "type": "mlp",
        "input_dim": d,
        "widths": [width],
        "output_dim": 1,
        "activation": "tanh",
        "parameterization": "ntk",
        "seed": 0,
    }


def unit_sphere_data(n: int = 16, d: int = 32, seed: int = 0) -> Dataset:
    """n unit-norm inputs in R^d and y ~ N(0, 1), seeded."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    return dataset(X, y, "unit-sphere")


def gaussian_data(n: int, d: int, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    return dataset(X, y, "gaussian")


def mlp(spec: dict[str, Any]) -> Model:
    return load_spec_model(spec)


def independent_gd_check(report: Report, model: Model, data: Dataset, tail_steps: int = 60) -> int:
    """Re-run GD independently and check the certified bound from the certified step on.

    Certified at w0: L_t <= rate^t L_0 and ||w_t - w0|| <= R. Certified at t* (path certificate):
    GD with the checking run's step up to t*, then the path's step; L_t <= rate^(t - t*) L_t*
    and ||w_t - w_t*|| <= R. Returns the number of steps checked.
    """
    assert report.verdict == "certified"
    X = data.X
    y = data.y.reshape(-1)
    t_star = report.path.certified_from_step
    assert t_star is not None
    if t_star == 0:
        eta, rate, radius = report.gd.step_size, report.gd.rate, report.constants.radius
    else:
        eta, rate, radius = report.path.step_size, report.path.rate, report.path.radius
    assert eta is not None and rate is not None and radius is not None
    pre = report.validation.step_size if report.validation else None
    w = model.flat_params().detach().clone()

    def loss_and_grad(v: torch.Tensor) -> tuple[float, torch.Tensor]:
        v = v.detach().requires_grad_(True)
        r = model.apply_flat(v, X) - y
        loss = 0.5 * (r * r).sum()
        (grad,) = torch.autograd.grad(loss, v)
        return float(loss.detach()), grad

    for _ in range(t_star):
        assert pre is not None
        _, grad = loss_and_grad(w)
        w = w - pre * grad
    w_star = w.clone()
    L_star, _ = loss_and_grad(w)
    floor = 1e-26 * max(1.0, float((y * y).sum()))
    for t in range(tail_steps + 1):
        loss, grad = loss_and_grad(w)
        assert loss <= rate**t * L_star * (1 + 1e-9) + floor, (t, loss, rate**t * L_star)
        assert float((w - w_star).norm()) <= radius * (1 + 1e-9)
        w = w - eta * grad
    return tail_steps
