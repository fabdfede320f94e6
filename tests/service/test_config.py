"""service.config: settings refuse bad configuration with a clear message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.config import (
    ConfigError,
    auth_mode_message,
    check_bind_host,
    hash_api_key,
    is_loopback,
    load_settings,
    machine_memory_bytes,
)


def test_defaults_put_the_database_in_the_data_dir(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, database_url="", api_keys="", host="127.0.0.1")
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'plcert.db'}"
    assert s.artifacts_dir == tmp_path / "artifacts"
    assert not s.auth_enabled


def test_plain_postgresql_url_uses_psycopg(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, database_url="postgresql://u@h/db")
    assert s.resolved_database_url == "postgresql+psycopg://u@h/db"


def test_bad_database_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"database_url.*scheme must be one of"):
        load_settings(data_dir=tmp_path, database_url="mysql://u:secret@h/db")


def test_bad_broker_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PLCERT_BROKER_URL='ftp://x'"):
        load_settings(data_dir=tmp_path, broker_url="ftp://x")


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_upload_bytes", -1), ("lease_s", 0), ("port", 70000), ("max_attempts", 0)],
)
def test_negative_or_out_of_range_limits_are_refused(
    tmp_path: Path, field: str, value: float
) -> None:
    with pytest.raises(ConfigError, match=field):
        load_settings(data_dir=tmp_path, **{field: value})


def test_hard_limit_below_soft_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"HARD_TIME_LIMIT_S=10\.0 is below"):
        load_settings(data_dir=tmp_path, job_time_limit_s=20, job_hard_time_limit_s=10)


def test_api_keys_are_parsed_and_kept_hashed(tmp_path: Path) -> None:
    key = "k" * 20
    s = load_settings(data_dir=tmp_path, api_keys=f"acme:{key}, beta:{'b' * 20}")
    assert s.api_key_hashes[hash_api_key(key)] == "acme"
    assert s.auth_enabled and key not in repr(s)


@pytest.mark.parametrize("raw", ["nocolon", "acme:", ":key0123456789abcdef", "acme:short"])
def test_malformed_api_keys_are_refused_without_echoing_them(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="PLCERT_API_KEYS entry 1") as info:
        load_settings(data_dir=tmp_path, api_keys=raw)
    if ":" in raw and raw.split(":")[1]:
        assert raw.split(":")[1] not in str(info.value)


def test_non_loopback_host_without_keys_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a loopback address and no API keys"):
        load_settings(data_dir=tmp_path, api_keys="", host="0.0.0.0")
    ok = load_settings(data_dir=tmp_path, api_keys="a:" + "k" * 20, host="0.0.0.0")
    assert ok.host == "0.0.0.0"


def test_check_bind_host_and_auth_message(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, api_keys="")
    assert auth_mode_message(s) == "no API keys configured: binding to 127.0.0.1 only"
    check_bind_host(s, "127.0.0.1")
    with pytest.raises(ConfigError, match=r"refusing to bind '10\.0\.0\.5'"):
        check_bind_host(s, "10.0.0.5")
    check_bind_host(s, "10.0.0.5", stored_keys=True)  # keys made with `plcert keys create`


@pytest.mark.parametrize(
    ("host", "loop"), [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False)]
)
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_environment_variables_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLCERT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PLCERT_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("PLCERT_API_KEYS", "")
    monkeypatch.setenv("PLCERT_HOST", "127.0.0.1")
    s = load_settings()
    assert s.data_dir == tmp_path and s.max_upload_bytes == 1234


def test_torch_threads_override_is_validated(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path).torch_threads is None
    assert load_settings(data_dir=tmp_path, torch_threads=3).torch_threads == 3
    with pytest.raises(ConfigError, match="torch_threads"):
        load_settings(data_dir=tmp_path, torch_threads=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8GiB", 8 * 2**30), ("512MB", 512 * 10**6), ("1048576", 2**20), ("1.5 g", 1_500_000_000)],
)
def test_worker_memory_limit_accepts_bytes_and_units(
    tmp_path: Path, text: str, expected: int
) -> None:
    assert (
        load_settings(data_dir=tmp_path, worker_memory_limit=text).worker_memory_limit == expected
    )


@pytest.mark.parametrize("text", ["lots", "-1G", "8XB", ""])
def test_worker_memory_limit_refuses_what_is_not_a_size(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"PLCERT_WORKER_MEMORY_LIMIT=.*is not a size"):
        load_settings(data_dir=tmp_path, worker_memory_limit=text)


def test_worker_memory_limit_defaults_to_the_machine_memory(tmp_path: Path) -> None:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = load_settings(data_dir=tmp_path).worker_memory_limit
    assert 0 < limit <= total


def test_machine_memory_is_lowered_by_a_cgroup_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1073741824\n")
    assert machine_memory_bytes(tmp_path) == 2**30
    (tmp_path / "memory.max").write_text("max\n")
    assert machine_memory_bytes(tmp_path) == machine_memory_bytes(tmp_path / "absent")
