"""tests/conftest.py puts the service's loggers back after each test.

`plcert serve` run in-process (CliRunner) points the ``plcert`` logger at the runner's stderr,
which is closed afterwards; without the restore, the next log line of the process raised
ValueError inside the app (seen as a stray 500 under pytest-xdist, where the order of tests
changes). Run in a fresh pytest process, with the conftest loaded as a plugin.
"""

from __future__ import annotations

from pathlib import Path

from tests.generated_run import run_generated_module

MODULE = """
import gc
import logging

from typer.testing import CliRunner

from service.cli import app as cli
from service.config import get_settings


def test_1_serve_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("PLCERT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PLCERT_API_KEYS", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2


def test_2_a_later_log_line_is_written():
    gc.collect()
    logging.getLogger("plcert.api").info("a request")
"""


def test_a_serve_run_in_process_leaves_no_closed_stream_behind(tmp_path: Path) -> None:
    # -s: logging reports a failed write on stderr and goes on; uncaptured, the report shows
    out = run_generated_module(tmp_path, MODULE, ["-q", "-s", "-p", "tests.conftest"])
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "2 passed" in text, text[-3000:]
    assert "Logging error" not in text and "closed file" not in text, text[-3000:]
