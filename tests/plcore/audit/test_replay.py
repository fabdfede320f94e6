"""Audit: every rigorous certificate that ``certify`` gives on the model family is replayed by an
independent gradient descent (tests/plcore/audit_support.py: a plain loop on the source torch
module through functional_call, no plcore code), which must obey the certified rate and stay in
the certified ball.

Problems: targets y = F(w0) - e with a small e, so that the certificate closes at w0
(``near``), or e = a v_max + b v_min along the extreme eigenvectors of K(w0), so that it
closes only later along the run (``path``; the fast direction decays within a few steps).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from plcore import certify
from plcore.dataset import Dataset
from plcore.options import CertifyOptions
from plcore.report.schema import Report
from tests.plcore.audit.family import inputs, mlp
from tests.plcore.audit_support import FlatMap, run_gd

REL = 1e-12


def _targets(F: FlatMap, kind: str, seed: int) -> torch.Tensor:
    w0 = F.w0()
    r0 = F.residual(w0)  # = F(w0) with zero targets
    if kind == "near":
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(r0.numel(), generator=g, dtype=torch.float64)
        return r0 - 1e-5 * u / u.norm()
    J0 = F.jacobian(w0)
    _, vec = np.linalg.eigh(J0 @ J0.T)
    return r0 - torch.from_numpy(3e-2 * vec[:, -1] + 1e-5 * vec[:, 0])


def _certified(depth: int, act: str, kind: str, n: int, width: int, steps: int) -> tuple:
    model = mlp(depth, act, seed=depth * 7 + n, width=width, k=1)
    X = inputs(n, (3,), depth + n)
    F0 = FlatMap.of(model.module, X, torch.zeros(n))
    y = _targets(F0, kind, seed=n)
    F = FlatMap.of(model.module, X, y)
    data = Dataset(X=X, y=y.reshape(n, 1), sha256="audit")
    opts = CertifyOptions(budget="fast", validation_steps=steps, batch_sizes=[], seed=0)
    return certify(model, data, opts), F


def _replay(report: Report, F: FlatMap) -> None:
    v = report.validation
    assert v is not None and v.step_size is not None
    sw, after = v.step_size_switched_at, v.step_size_after_switch
    run = run_gd(F, F.w0(), v.steps, lambda t: after if sw is not None and t >= sw else v.step_size)
    atol = 0.5 * (1e-13 * (float(F.y.norm()) + float(F(F.w0()).norm()))) ** 2
    p = report.path
    if p.certified_from_step == 0 and p.rate is None:  # closed at w0
        rate, R, start = report.gd.rate, report.constants.radius, 0
    else:
        rate, R, start = p.rate, p.radius, p.certified_from_step
    assert rate is not None and R is not None and start is not None
    L_start = run.losses[start]
    for t in range(start, v.steps + 1):
        assert run.losses[t] <= rate ** (t - start) * L_start * (1 + REL) + atol, t
        assert float((run.weights[t] - run.weights[start]).norm()) <= R * (1 + 1e-9), t


CASES = [
    pytest.param(1, "silu", "near", 4, 12, 30, id="silu1-near"),
    pytest.param(2, "gelu", "near", 3, 8, 30, id="gelu2-near"),
    pytest.param(1, "sigmoid", "near", 4, 10, 30, id="sigmoid1-near"),
    pytest.param(1, "erf", "path", 4, 16, 60, id="erf1-path"),
    pytest.param(1, "tanh", "path", 5, 24, 60, id="tanh1-path"),
]


@pytest.mark.parametrize(("depth", "act", "kind", "n", "width", "steps"), CASES)
def test_rigorous_certificate_is_replayed_by_an_independent_gd(
    depth: int, act: str, kind: str, n: int, width: int, steps: int
) -> None:
    report, F = _certified(depth, act, kind, n, width, steps)
    print(report.verdict, report.tier, report.path.certified_from_step, report.reasons[:1])
    assert (report.verdict, report.tier) == ("certified", "rigorous"), report.reasons
    if kind == "path":
        assert report.path.certified_from_step is not None and report.path.certified_from_step > 0
        assert report.path.residual_threshold_at_step is not None
        assert report.path.ball_radius is not None
    _replay(report, F)
    assert all(not s.hypotheses_verified for s in report.sgd)
    assert math.isfinite(report.initial.lambda_min)


def test_tied_model_is_never_rigorous_even_when_it_closes() -> None:
    from tests.plcore.audit.family import tied_mlp

    model = tied_mlp("tanh", seed=2, width=6)
    X = inputs(3, (3,), 5)
    F0 = FlatMap.of(model.module, X, torch.zeros(3))
    y = _targets(F0, "near", seed=3)
    data = Dataset(X=X, y=y.reshape(3, 1), sha256="audit-tied")
    opts = CertifyOptions(budget="fast", validation_steps=20, batch_sizes=[], seed=0)
    report = certify(model, data, opts)
    assert report.tier == "estimated"
    assert report.constants.beta_F.upper_bound is None
    assert any("rigorous tier refused" in r for r in report.reasons)


@pytest.mark.slow
def test_wide_ntk_tanh_path_certificate_turns_rigorous_after_an_estimated_closure() -> None:
    """Issue 7, item 4: NTK tanh MLP, width 4096, one hidden layer, 16 points. The path checker
    used to stop at its first (estimated) closure; it now keeps looking and finds a rigorous one,
    which an independent GD replays."""
    import dataclasses

    from tests.plcore.certify_cases import mlp as spec_mlp
    from tests.plcore.certify_cases import ntk_tanh_spec, unit_sphere_data

    model = dataclasses.replace(spec_mlp(ntk_tanh_spec(4096)), spec=None)  # no width sweep
    data = unit_sphere_data()
    opts = CertifyOptions(budget="fast", validation_steps=280, batch_sizes=[], seed=0)
    report = certify(model, data, opts)
    assert (report.verdict, report.tier) == ("certified", "rigorous"), report.reasons
    assert report.path.tier == "rigorous" and "estimated closure at step" in report.path.note
    F = FlatMap.of(model.module, data.X, data.y.reshape(-1))
    _replay(report, F)
