from __future__ import annotations

from collections import Counter

import pytest
import torch

from plcore.errors import Cancelled, OptionsError
from plcore.estimate.probes import probe_ball
from plcore.kernel import tangent_kernel
from plcore.progress import Progress
from tests.plcore.hessian.nets import tiny_data, tiny_mlp

MODEL = tiny_mlp([3, 5, 2], "tanh", seed=0)
DATA = tiny_data(3, 3, 2)


def test_records_estimates_and_evaluation_counts() -> None:
    rho = 0.4
    w0 = MODEL.flat_params()
    inside = w0 + 0.2 * torch.ones_like(w0) / w0.numel() ** 0.5
    outside = w0 + 10.0
    probe = probe_ball(
        MODEL,
        DATA,
        rho,
        generator=torch.Generator().manual_seed(0),
        n_sphere=2,
        n_adversarial=1,
        adversarial_steps=3,
        path=[inside, outside],
    )
    sources = Counter(r.source for r in probe.records)
    assert sources == {
        "center": 1,
        "sphere": 6,
        "path": 1,
        "ascent_hessian": 1,
        "descent_lambda": 1,
    }
    assert probe.records[0].distance == 0.0
    spheres = sorted(r.distance for r in probe.records if r.source == "sphere")
    assert spheres == pytest.approx([rho / 4] * 2 + [rho / 2] * 2 + [rho] * 2, rel=1e-12)
    assert all(r.distance <= rho * (1 + 1e-12) for r in probe.records)
    assert probe.L_F_lower == max(r.jacobian_norm for r in probe.records)
    assert probe.beta_F_lower == max(r.hessian_norm for r in probe.records)
    assert probe.mu_upper == min(r.lambda_min for r in probe.records)
    # 1 centre + 6 sphere + 1 path + 1 final per adversarial run, + (steps + 1) per descent run
    assert probe.kernel_evaluations == 1 + 6 + 1 + 2 + 4
    assert probe.hessian_evaluations == 1 + 6 + 1 + 4 + 1


def test_adversarial_runs_improve_on_the_centre() -> None:
    probe = probe_ball(
        MODEL,
        DATA,
        0.5,
        generator=torch.Generator().manual_seed(1),
        n_sphere=0,
        n_adversarial=1,
        adversarial_steps=5,
    )
    centre = probe.records[0]
    ascent = next(r for r in probe.records if r.source == "ascent_hessian")
    descent = next(r for r in probe.records if r.source == "descent_lambda")
    assert ascent.hessian_norm > centre.hessian_norm * 1.01
    assert descent.lambda_min < centre.lambda_min * 0.99
    assert 0 < descent.distance <= 0.5 * (1 + 1e-12)


def test_ball_can_be_centred_elsewhere() -> None:
    center = MODEL.flat_params() + 0.05
    probe = probe_ball(
        MODEL,
        DATA,
        0.2,
        generator=torch.Generator().manual_seed(4),
        n_sphere=1,
        n_adversarial=0,
        center=center,
    )
    K = tangent_kernel(MODEL, DATA.X, params=center)
    assert probe.records[0].lambda_min == pytest.approx(float(torch.linalg.eigvalsh(K)[0]))
    # the boundary shell is probed first (a ball that cannot close is settled soonest)
    assert sorted(r.distance for r in probe.records[1:]) == pytest.approx([0.05, 0.1, 0.2])


def test_zero_radius_only_sees_the_centre() -> None:
    probe = probe_ball(
        MODEL,
        DATA,
        0.0,
        generator=torch.Generator().manual_seed(2),
        n_sphere=1,
        n_adversarial=1,
        adversarial_steps=2,
    )
    assert all(r.distance == 0.0 for r in probe.records)
    assert probe.mu_upper == pytest.approx(probe.records[0].lambda_min, rel=1e-12)


def test_progress_is_reported_and_cancellation_stops_the_probe() -> None:
    seen: list[tuple[float, str]] = []
    probe_ball(
        MODEL,
        DATA,
        0.3,
        generator=torch.Generator().manual_seed(3),
        n_sphere=1,
        n_adversarial=1,
        adversarial_steps=1,
        progress=Progress(on_progress=lambda f, s: seen.append((f, s))),
    )
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert all(s.split(":")[0] == "probing ball rho=0.3" for _, s in seen)
    assert any(s.startswith("probing ball rho=0.3: hessian norm: restart") for _, s in seen)
    calls = 0

    def cancel_after_two() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2

    with pytest.raises(Cancelled):
        probe_ball(
            MODEL,
            DATA,
            0.3,
            generator=torch.Generator().manual_seed(3),
            n_sphere=4,
            progress=Progress(should_cancel=cancel_after_two),
        )
    assert calls == 3


def test_invalid_arguments_are_rejected() -> None:
    g = torch.Generator()
    with pytest.raises(OptionsError, match=r"got -1\.0"):
        probe_ball(MODEL, DATA, -1.0, generator=g)
    with pytest.raises(OptionsError, match="got -1, 2, 10, 1"):
        probe_ball(MODEL, DATA, 1.0, generator=g, n_sphere=-1)
