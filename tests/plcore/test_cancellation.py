"""A cancel request is honoured within 2 s in every stage of ``certify`` (issue 8, item 4).

For each stage, ``should_cancel`` flips to True a moment after that stage is first reported;
the test measures the wall time from the flip to :class:`Cancelled`. For the long stages the
model (an NTK tanh MLP with two hidden layers on 16 points, 300 GD steps; width and budget per
stage in LONG_STAGES) makes each last over 2 s without the checks inside its loops (Lanczos,
power method, probes, GD), so a missing check fails the test, and the test also asserts that
the cancel landed inside the stage. The short stages (bookkeeping after the loops) run on a
width-16 model.

The first double-backward pass of a process imports sympy and torch._dynamo (1-3 s, no check
can interrupt an import); a worker pays it once, when warmed up at start. The fixture below
warms this test process the same way, so the timed runs measure the loops.
"""

from __future__ import annotations

import time

import pytest
import torch

from plcore import CertifyOptions, certify
from plcore.certificate.timings import StageClock
from plcore.errors import Cancelled
from plcore.hessian import output_hvp
from plcore.hessian.hvp import warm_up
from plcore.kernel import vjp
from plcore.models.spec import load_spec_model
from tests.plcore.certify_cases import unit_sphere_data

pytestmark = pytest.mark.serial  # wall-clock limits: nothing else may run beside it

# (stage, budget, hidden width, delay, GD steps): each stage lasts well over delay + 2 s without
# its inner checks, also on a quiet 2-core machine (measured there, uncancelled: hessian norm
# 8.2 s, radius search 9.7 s, checking run 13 s, width extrapolation 15 s)
LONG_STAGES = [
    ("hessian norm", "standard", 256, 0.5, 300),
    ("radius search", "thorough", 128, 0.5, 300),
    ("checking run", "fast", 128, 0.5, 20_000),
    ("width extrapolation", "standard", 256, 0.2, 300),
]
SHORT_STAGES = ["initial quantities", "path certificate", "report"]


@pytest.fixture(scope="module", autouse=True)
def _warm_process() -> None:
    model = load_spec_model({"type": "mlp", "input_dim": 2, "widths": [3], "output_dim": 1})
    X = torch.ones(1, 2, dtype=torch.float64)
    w = model.flat_params()
    output_hvp(model, X, torch.ones(1, dtype=torch.float64), w)
    vjp(model, X, torch.ones(1, dtype=torch.float64), params=w)
    torch.func.jvp(lambda v: model.apply_flat(v, X), (w,), (w,))
    warm_up()


LIMIT_S = 2.0


def _cancel_in(
    stage: str, delay: float, width: int, budget: str = "fast", steps: int = 300
) -> tuple[float, str]:
    """Run certify, cancel ``delay`` s after ``stage`` is first reported; (lag, last stage)."""
    spec = {
        "type": "mlp",
        "input_dim": 32,
        "widths": [width, width],
        "output_dim": 1,
        "activation": "tanh",
        "parameterization": "ntk",
        "seed": 0,
    }
    model = load_spec_model(spec)
    data = unit_sphere_data(n=16, d=32)
    flip_at: list[float] = []
    last = [""]

    def on_progress(fraction: float, name: str) -> None:
        key = StageClock.key(name)
        last[0] = key
        if key == stage and not flip_at:
            flip_at.append(time.perf_counter() + delay)

    def should_cancel() -> bool:
        return bool(flip_at) and time.perf_counter() >= flip_at[0]

    with pytest.raises(Cancelled, match="cancellation requested"):
        certify(
            model,
            data,
            CertifyOptions(budget=budget, validation_steps=steps),  # type: ignore[arg-type]
            on_progress=on_progress,
            should_cancel=should_cancel,
        )
    assert flip_at, f"stage {stage!r} was never reported"
    return time.perf_counter() - flip_at[0], last[0]


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "budget", "width", "delay", "steps"), LONG_STAGES)
def test_cancel_is_honoured_within_two_seconds_inside_a_long_stage(
    stage: str, budget: str, width: int, delay: float, steps: int
) -> None:
    lag, last = _cancel_in(stage, delay, width, budget, steps)
    assert last == stage, f"the stage ended before the cancel (last reported: {last!r})"
    assert lag <= LIMIT_S, f"cancel in {stage!r} took {lag:.2f} s"


@pytest.mark.slow
@pytest.mark.parametrize("stage", SHORT_STAGES)
def test_cancel_is_honoured_within_two_seconds_in_a_short_stage(stage: str) -> None:
    lag, _ = _cancel_in(stage, 0.0, 16)
    assert lag <= LIMIT_S, f"cancel in {stage!r} took {lag:.2f} s"
