"""Run pytest on a generated test module in a fresh process (for tests of the test harness)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import ROOT


def run_generated_module(
    folder: Path, module: str, args: Sequence[str], **env: str
) -> subprocess.CompletedProcess[str]:
    """Write ``module`` as ``folder/test_generated.py`` and run ``pytest ARGS folder`` on it, with
    the repository importable, ``env`` added, and outside any xdist run of the caller (its own
    locks); never raises on the exit status."""
    (folder / "test_generated.py").write_text(module)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full_env.pop("PYTEST_XDIST_TESTRUNUID", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, str(folder)],
        cwd=folder,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
