"""``Progress.run_blocking``: a long native call (kernel assembly, eigendecomposition, Cholesky)
runs beside a cancellation poll, so a cancel is honoured within 2 s even inside it."""

from __future__ import annotations

import time

import pytest
import torch

from plcore.errors import Cancelled, NumericalError
from plcore.estimate import spectral
from plcore.estimate.spectral import initial_quantities
from plcore.models.spec import load_spec_model
from plcore.progress import Progress
from tests.plcore.certify_cases import unit_sphere_data

pytestmark = pytest.mark.serial  # wall-clock limits: nothing else may run beside it


def test_returns_the_value_and_reports_moving_fractions() -> None:
    seen: list[tuple[float, str]] = []
    prog = Progress(on_progress=lambda f, s: seen.append((f, s)))
    assert prog.run_blocking(lambda: time.sleep(0.35) or 7, "stage: sleep", expected_s=1.0) == 7
    fractions = [f for f, _ in seen]
    assert len(fractions) >= 2 and fractions == sorted(fractions) and fractions[-1] < 1.0
    assert all(s.startswith("stage: sleep (") for _, s in seen)


def test_an_error_of_the_call_is_raised_in_the_caller() -> None:
    def fail() -> None:
        raise NumericalError("not positive definite")

    with pytest.raises(NumericalError, match="not positive definite"):
        Progress(should_cancel=lambda: False).run_blocking(fail, "stage")


def test_grad_mode_is_carried_into_the_helper_thread() -> None:
    prog = Progress(should_cancel=lambda: False)
    with torch.no_grad():
        assert prog.run_blocking(torch.is_grad_enabled, "stage") is False
    assert prog.run_blocking(torch.is_grad_enabled, "stage") is True


def test_cancel_during_a_blocking_call_is_raised_within_half_a_second() -> None:
    flip = time.perf_counter() + 0.3
    prog = Progress(should_cancel=lambda: time.perf_counter() >= flip)
    with pytest.raises(Cancelled):
        prog.run_blocking(lambda: time.sleep(5.0), "stage: a 5 s native call")
    assert time.perf_counter() - flip < 0.5


def test_initial_quantities_are_cancelled_inside_the_eigendecomposition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 5 s eigendecomposition (the real one, after a sleep standing in for N in the tens of
    thousands) is left within 2 s of the cancel, and the stage step names the call."""
    real = spectral.kernel_spectrum

    def slow(K: torch.Tensor) -> torch.Tensor:
        time.sleep(5.0)
        return real(K)

    monkeypatch.setattr(spectral, "kernel_spectrum", slow)
    model = load_spec_model({"type": "mlp", "input_dim": 4, "widths": [8], "output_dim": 1})
    data = unit_sphere_data(n=6, d=4)
    steps: list[str] = []
    flip: list[float] = []

    def on_progress(f: float, stage: str) -> None:
        steps.append(stage)
        if "eigenvalues" in stage and not flip:
            flip.append(time.perf_counter() + 0.2)

    prog = Progress(on_progress, lambda: bool(flip) and time.perf_counter() >= flip[0])
    with pytest.raises(Cancelled):
        initial_quantities(model, data, progress=prog)
    assert time.perf_counter() - flip[0] < 2.0
    assert any(s.startswith("initial quantities: eigenvalues of K (N = 6)") for s in steps)


def test_calls_share_one_primed_helper_thread_and_an_abandoned_call_does_not_block() -> None:
    """One long-lived helper thread (its OpenMP team started by prime_threads, before a worker's
    memory limit); while a cancelled call still runs there, the next call gets its own thread."""
    import threading

    from plcore import progress
    from plcore.progress import prime_threads

    deadline = time.monotonic() + 15.0  # an earlier test's abandoned call may still run there
    while progress._BLOCKING._busy and time.monotonic() < deadline:
        time.sleep(0.05)
    prime_threads()
    prog = Progress(on_progress=lambda f, s: None)
    names = {prog.run_blocking(lambda: threading.current_thread().name, "s") for _ in range(3)}
    assert names == {"plcore-blocking"}
    flag = {"cancel": False}
    slow = Progress(should_cancel=lambda: flag["cancel"])
    timer = threading.Timer(0.2, lambda: flag.update(cancel=True))
    timer.start()
    with pytest.raises(Cancelled):
        slow.run_blocking(lambda: time.sleep(1.5), "slow")
    flag["cancel"] = False
    t0 = time.monotonic()
    name = prog.run_blocking(lambda: threading.current_thread().name, "next")
    assert name == "plcore-blocking-extra" and time.monotonic() - t0 < 1.0
    time.sleep(1.5)  # the abandoned call ends; the shared thread is free again
    assert prog.run_blocking(lambda: threading.current_thread().name, "s") == "plcore-blocking"
