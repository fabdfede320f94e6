from __future__ import annotations

from collections import Counter

import pytest
import torch

from plcore.errors import Cancelled, OptionsError
from plcore.estimate.probes import ProbeCache, probe_ball
from plcore.hessian import brute_force_tensor_norm, dense_output_hessians
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
    # kernels: centre + 6 sphere + 1 path + the ascent's best point + the descent's 3 steps
    # after its start (it starts at the centre and ends on one of its own points: both known)
    assert probe.kernel_evaluations == 1 + 6 + 1 + 1 + 3
    # Hessian solves: centre + 6 sphere + 1 path + ascent steps + descent's final point; the
    # ascent starts at the centre, whose solution is reused (not solved twice)
    assert probe.hessian_evaluations == 1 + 6 + 1 + 3 + 1


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


def test_a_shared_cache_reuses_inner_points_and_warm_starts_the_hessian() -> None:
    cache = ProbeCache()
    gen = torch.Generator().manual_seed(4)
    small = probe_ball(MODEL, DATA, 0.2, generator=gen, n_sphere=2, n_adversarial=0, cache=cache)
    big = probe_ball(MODEL, DATA, 0.4, generator=gen, n_sphere=2, n_adversarial=0, cache=cache)
    # the small ball's centre and its shells at 0.2 and 0.1 count for the big ball (a shell at
    # radius s is covered by points at distances in [s, 2 s]), so only its boundary is new
    assert big.reused == len(small.records) == 7
    new = big.records[big.reused :]
    assert sorted(r.distance for r in new) == pytest.approx([0.4, 0.4])
    assert all(r.distance <= 0.4 * (1 + 1e-12) for r in big.records)
    assert big.beta_F_lower >= small.beta_F_lower and big.mu_upper <= small.mu_upper
    # every warm-started value is still attained: a lower bound of the dense ||H_F(w)||
    H = dense_output_hessians(MODEL, DATA.X)
    brute = brute_force_tensor_norm(H, generator=torch.Generator().manual_seed(0), n_starts=8)
    assert big.records[0].hessian_norm <= brute.value * (1 + 1e-9)
    assert big.records[0].hessian_norm >= brute.value * (1 - 1e-4)


def test_the_stop_rule_ends_probing_once_it_answers_true() -> None:
    seen: list[tuple[float, float, float]] = []

    def stop(L: float, beta: float, mu: float) -> bool:
        seen.append((L, beta, mu))
        return len(seen) == 2

    probe = probe_ball(
        MODEL, DATA, 0.3, generator=torch.Generator().manual_seed(5), n_sphere=3, stop=stop
    )
    assert probe.stopped_early and len(probe.records) == 2 and len(seen) == 2
    L, beta, mu = seen[-1]
    assert probe.L_F_lower == L and beta == probe.beta_F_lower and mu == probe.mu_upper
