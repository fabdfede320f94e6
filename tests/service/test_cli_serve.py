"""`plcert serve` refuses to expose an unauthenticated API."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.cli.serve import _redact
from service.config import get_settings

runner = CliRunner()


def test_serve_refuses_a_public_host_without_api_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLCERT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PLCERT_API_KEYS", raising=False)
    get_settings.cache_clear()
    try:
        result = runner.invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "refusing to bind '0.0.0.0' with no API keys configured" in result.stderr
    # the job store is opened (to look for keys made with `plcert keys`), nothing is started
    assert not (tmp_path / "broker").exists()


def test_serve_reports_bad_configuration_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLCERT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PLCERT_BROKER_URL", "nonsense")
    get_settings.cache_clear()
    try:
        result = runner.invoke(cli, ["serve", "--port", "0"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "PLCERT_BROKER_URL='nonsense'" in result.stderr


def test_logged_urls_hide_credentials() -> None:
    assert _redact("postgresql+psycopg://u:secret@db/plcert") == "postgresql+psycopg://db/plcert"
    assert _redact("filesystem://") == "filesystem://"
