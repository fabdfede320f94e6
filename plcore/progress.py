"""Progress reporting and cooperative cancellation for long computations.

The worker passes two callables into :func:`plcore.certify`: ``on_progress(fraction, stage)``
and ``should_cancel() -> bool``. The core calls :meth:`Progress.step` between units of work;
when ``should_cancel`` answers True it raises :class:`plcore.errors.Cancelled`, so no half
computed report is ever returned.

Stage strings: ``"name"`` or ``"name: step"`` (e.g. ``"hessian norm: restart 2/3, iteration
14"``). The name (:func:`stage_name`) says which stage runs; the step after :data:`STEP_SEPARATOR`
says where within it. Consumers treat a new name as a stage change (the worker writes it at once)
and a new step as progress within the stage.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from plcore.errors import Cancelled

T = TypeVar("T")

BLOCKING_POLL_S = 0.1
"""How often :meth:`Progress.run_blocking` checks for cancellation while a native call runs."""


class _BlockingThread:
    """The one long-lived helper thread of :meth:`Progress.run_blocking`.

    A fresh thread per call would also start a fresh OpenMP team for torch's parallel loops
    (libgomp keeps one per calling thread), and under a worker's address-space limit
    (``worker.memory``) libgomp aborts the whole process when it cannot create one. Reusing one
    thread whose team exists from the start (:func:`prime_threads`) avoids that. A call that was
    abandoned on cancellation and still runs keeps the thread busy: the next call then gets a
    thread of its own, as before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work: list[Callable[[], None]] = []
        self._ready = threading.Condition(self._lock)
        self._busy = False
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._work:
                    self._ready.wait()
                job = self._work.pop()
            try:
                job()
            finally:
                with self._lock:
                    self._busy = False

    def start(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the shared thread when it is idle, else on a thread of its own."""
        with self._ready:
            if not self._busy:
                self._busy = True
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._loop, name="plcore-blocking", daemon=True
                    )
                    self._thread.start()
                self._work.append(job)
                self._ready.notify()
                return
        threading.Thread(target=job, name="plcore-blocking-extra", daemon=True).start()


_BLOCKING = _BlockingThread()


def prime_threads() -> None:
    """Start torch's OpenMP team in this thread and in the shared helper thread of
    :meth:`Progress.run_blocking` (a worker calls this before its first job, before any memory
    limit applies)."""
    a = torch.ones(512, 512, dtype=torch.float64)
    float((a @ a).sum())
    done = threading.Event()

    def job() -> None:
        try:
            float((a @ a).sum())
        finally:
            done.set()

    _BLOCKING.start(job)
    done.wait(60.0)


ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]

STEP_SEPARATOR = ": "
"""Separates a stage's name from the step within it in a stage string."""


def stage_name(stage: str) -> str:
    """The stage's name without the step: ``"radius search: rho 3/10"`` -> ``"radius search"``."""
    return stage.split(STEP_SEPARATOR, 1)[0].strip()


def with_step(name: str, step: str) -> str:
    """``"name: step"`` (the stage string for a step within a stage)."""
    return f"{name}{STEP_SEPARATOR}{step}"


@dataclass
class Progress:
    """Maps named stages onto [0, 1] and checks for cancellation at every report."""

    on_progress: ProgressCallback | None = None
    should_cancel: CancelCheck | None = None
    start: float = 0.0
    end: float = 1.0

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled("cancellation requested")

    def step(self, fraction: float, stage: str) -> None:
        """Report ``fraction`` (0..1 within this span) of ``stage``; raise if cancelled."""
        self.check()
        if self.on_progress is not None:
            f = self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)
            self.on_progress(f, stage)

    def span(self, start: float, end: float) -> Progress:
        """A child that reports within [start, end] of this span."""
        width = self.end - self.start
        return Progress(
            self.on_progress,
            self.should_cancel,
            self.start + width * start,
            self.start + width * end,
        )

    def run_blocking(self, fn: Callable[[], T], stage: str, expected_s: float = 5.0) -> T:
        """``fn()`` (one long native call: a kernel assembly, an eigendecomposition, a Cholesky
        factorisation) in a helper thread, while this thread checks for cancellation every
        :data:`BLOCKING_POLL_S` and moves the fraction towards the end of the span
        (1 - exp(-t / expected_s)), reporting ``stage`` with the seconds elapsed.

        On cancellation :class:`Cancelled` is raised at once and the helper thread is abandoned:
        LAPACK cannot be interrupted, so it finishes its call in the background and its result is
        dropped. Autograd's grad mode (thread-local) is carried into the helper thread.
        """
        if self.should_cancel is None and self.on_progress is None:
            return fn()
        self.check()
        box: dict[str, object] = {}
        grad = torch.is_grad_enabled()

        def target() -> None:
            try:
                with torch.set_grad_enabled(grad):
                    box["value"] = fn()
            except BaseException as e:  # re-raised in the calling thread
                box["error"] = e

        finished = threading.Event()

        def job() -> None:
            try:
                target()
            finally:
                finished.set()

        start = time.monotonic()
        _BLOCKING.start(job)
        while True:
            if finished.wait(BLOCKING_POLL_S):
                break
            elapsed = time.monotonic() - start
            fraction = 1.0 - math.exp(-elapsed / max(expected_s, 1e-3))
            self.step(fraction, f"{stage} ({elapsed:.0f} s)")
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]
