"""Shared test configuration: make the repository root importable, keep torch deterministic, and
let tests marked ``serial`` run alone when pytest-xdist spreads the suite over several processes
(:mod:`tests.xdist_turns`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.xdist_turns import pytest_runtest_protocol  # noqa: E402,F401  (the hook, by its name)

torch.set_default_dtype(torch.float64)
torch.set_num_threads(max(1, int(os.environ.get("PLCERT_TEST_THREADS", "1"))))

ARTIFACTS = ROOT / "test-artifacts"

_CONFIGURED_LOGGERS = ("plcert", "uvicorn", "uvicorn.error", "uvicorn.access", "celery")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put back the loggers that ``service.logging.configure_logging`` sets up.

    A test that runs `plcert serve` in-process (CliRunner) configures them with a handler on the
    runner's stderr, which is closed when the command returns; every later log line of the
    process would then raise ValueError from inside the app (a 500 in whichever test came next).
    """
    saved = [
        (lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled)
        for lg in map(logging.getLogger, _CONFIGURED_LOGGERS)
    ]
    yield
    for lg, handlers, level, propagate, disabled in saved:
        lg.handlers, lg.level, lg.propagate, lg.disabled = handlers, level, propagate, disabled


@pytest.fixture
def artifacts_dir() -> Path:
    """A folder kept after the run for screenshots and reports (CI keeps it as an artifact)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def require_system_tool(name: str, reason: str) -> None:
    """Skip visibly when a system tool is missing, but fail in CI where it must be present."""
    import shutil

    if shutil.which(name) is None:
        message = f"{name} is not installed: {reason} (.ci/run installs it)"
        if os.environ.get("PLCERT_REQUIRE_SYSTEM_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)


CHROMIUM_FLAGS = (
    # flags for a sandboxed root session on a machine without network (PITFALLS.md)
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def run_chromium(
    *args: str, profile: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a fresh profile folder; never raises on its exit status."""
    cmd = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
