"""Serial tests under pytest-xdist: a test marked ``serial`` runs with no other test beside it.

`make test` spreads the suite over the machine's cores (``pytest -n auto``). Some tests measure
wall-clock limits or CPU shares (cancellation within 2 s, two jobs at once against one alone) or
act on the whole machine (restarting PostgreSQL); they carry ``@pytest.mark.serial``. This
plugin (registered by ``tests/conftest.py``; standard library only, so a plain ``pytest -p`` can
load it) runs each test's setup, call and teardown inside a turn: shared for ordinary tests,
exclusive for serial ones.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def turn(exclusive: bool) -> Iterator[None]:
    """Hold this worker's turn for one test.

    An exclusive turn waits until the tests running on the other workers end, and none starts
    until it ends. Two file locks give it priority: a waiting serial test holds the gate
    exclusively, so the other workers cannot keep the run lock shared between their tests
    forever. Without xdist (no test-run id in the environment) there is nobody to wait for.
    """
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run_id:
        yield
        return
    base = Path(tempfile.gettempdir()) / f"plcert-tests-{run_id}"
    with open(f"{base}.gate", "a") as gate, open(f"{base}.run", "a") as run:
        if exclusive:
            fcntl.flock(gate, fcntl.LOCK_EX)
            fcntl.flock(run, fcntl.LOCK_EX)
        else:
            fcntl.flock(gate, fcntl.LOCK_SH)
            fcntl.flock(run, fcntl.LOCK_SH)
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield  # closing the files releases what is still held


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Setup, call and teardown of each test (module fixtures included) inside its turn."""
    with turn(exclusive=item.get_closest_marker("serial") is not None):
        yield
