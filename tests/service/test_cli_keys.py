"""`plcert keys create|list|revoke` on a real SQLite job store, and the keys against the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from service.cli import app as cli
from service.config import get_settings, hash_api_key
from service.store.jobs import JobStore
from tests.service.conftest import AppFactory, assert_problem

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """PLCERT_DATA_DIR on a fresh folder (the one ``make_client`` apps use), no other config."""
    path = tmp_path / "data"
    monkeypatch.setenv("PLCERT_DATA_DIR", str(path))
    for name in ("PLCERT_DATABASE_URL", "PLCERT_API_KEYS", "PLCERT_HOST"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def keys(*args: str) -> Result:
    return runner.invoke(cli, ["keys", *args])


def created_key(tenant: str) -> str:
    result = keys("create", tenant)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def stored(data_dir: Path) -> JobStore:
    return JobStore(f"sqlite:///{data_dir / 'plcert.db'}")


def test_create_prints_a_random_key_once_and_stores_only_its_hash(data_dir: Path) -> None:
    result = keys("create", "acme")
    assert result.exit_code == 0, result.stderr
    key = result.stdout.strip()
    assert len(key) >= 43 and "\n" not in key  # token_urlsafe(32): 256 bits
    assert "cannot be shown again" in result.stderr
    store = stored(data_dir)
    try:
        (record,) = store.list_api_keys()
        assert record.key_sha256 == hash_api_key(key)
        assert record.tenant == "acme" and record.revoked_at is None
        assert store.tenant_for_key(hash_api_key(key)) == "acme"
    finally:
        store.dispose()
    assert created_key("acme") != key


def test_list_shows_id_tenant_and_dates_but_never_the_key(data_dir: Path) -> None:
    key_a, key_b = created_key("acme"), created_key("beta.io")
    result = keys("list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KEY", "ID", "TENANT", "CREATED", "REVOKED"]
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert set(rows) == {"acme", "beta.io"}
    assert rows["acme"][0] == hash_api_key(key_a)[:12]
    assert rows["acme"][2].endswith("Z") and rows["acme"][3] == "-"
    assert key_a not in result.output and key_b not in result.output


def test_list_of_an_empty_store_says_so(data_dir: Path) -> None:
    result = keys("list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no API keys stored" in result.stderr


def test_revoke_by_id_marks_the_key_revoked_and_list_active_hides_it(data_dir: Path) -> None:
    key = created_key("acme")
    key_id = hash_api_key(key)[:12]
    result = keys("revoke", key_id)
    assert result.exit_code == 0, result.stderr
    assert f"revoked key {key_id} of tenant 'acme'" in result.stdout
    listed = keys("list").stdout.splitlines()[1].split()
    assert listed[0] == key_id and listed[3] != "-"
    assert "no active API keys stored" in keys("list", "--active").stderr
    again = keys("revoke", key_id.upper())  # ids are case-insensitive hex
    assert again.exit_code == 2
    assert again.stderr.strip() == f"error: key {key_id} of tenant 'acme' is already revoked"


def test_revoke_accepts_a_unique_prefix(data_dir: Path) -> None:
    key = created_key("acme")
    result = keys("revoke", hash_api_key(key)[:6])
    assert result.exit_code == 0, result.stderr


def test_revoke_of_an_ambiguous_prefix_exits_2_and_revokes_nothing(data_dir: Path) -> None:
    store = stored(data_dir)
    store.migrate()
    try:
        store.add_api_key(tenant="a", key_sha256="abcdef01" + "0" * 56)
        store.add_api_key(tenant="b", key_sha256="abcdef02" + "0" * 56)
        result = keys("revoke", "abcdef0")
        assert result.exit_code == 2
        assert result.stderr.startswith("error: key id 'abcdef0' is ambiguous")
        assert "(a)" in result.stderr and "(b)" in result.stderr
        assert store.has_api_keys() and len(store.list_api_keys(include_revoked=False)) == 2
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["revoke", "123456789abc"], "error: no stored API key has id '123456789abc'"),
        (["revoke", "abc"], "error: 'abc' is not a key id: give 6 to 64 hex digits"),
        (["revoke", "key-not-hex"], "error: 'key-not-hex' is not a key id"),
        (["create", "has space"], "error: tenant 'has space' is not 1 to 128"),
        (["create", "a" * 129], f"error: tenant '{'a' * 129}' is not 1 to 128"),
        (["create", "-x"], ""),  # click reads it as an unknown option: a usage error
    ],
)
def test_bad_input_exits_2_with_one_error_line(
    data_dir: Path, args: list[str], message: str
) -> None:
    result = keys(*args)
    assert result.exit_code == 2
    if message:
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith(message)


def test_bad_configuration_exits_2(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLCERT_DATABASE_URL", "mysql://db/plcert")
    get_settings.cache_clear()
    result = keys("list")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid configuration: database_url")


def test_unreachable_database_exits_2_without_credentials(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLCERT_DATABASE_URL", "postgresql://admin:s3cret@127.0.0.1:1/plcert")
    get_settings.cache_clear()
    result = keys("list")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: cannot open the job store postgresql+psycopg://127.0.0.1:1/plcert:"
    )
    assert "s3cret" not in result.output


def test_created_key_authenticates_and_revoked_key_gets_401(
    data_dir: Path, make_client: AppFactory
) -> None:
    key = created_key("acme")
    _, client, _ = make_client()  # same data folder, so the same SQLite job store
    assert_problem(client.get("/v1/certifications"), 401)
    ok = client.get("/v1/certifications", headers={"X-API-Key": key})
    assert ok.status_code == 200, ok.text
    assert_problem(client.get("/v1/certifications", headers={"X-API-Key": key + "x"}), 401)

    assert keys("revoke", hash_api_key(key)[:12]).exit_code == 0
    other = created_key("beta")  # keeps authentication on once acme's key is revoked
    body = assert_problem(client.get("/v1/certifications", headers={"X-API-Key": key}), 401)
    assert body["detail"] == "invalid API key"
    assert client.get("/v1/certifications", headers={"X-API-Key": other}).status_code == 200


def test_revoking_the_last_key_locks_the_api_instead_of_opening_it(
    data_dir: Path, make_client: AppFactory
) -> None:
    key = created_key("acme")
    _, client, _ = make_client()
    assert keys("revoke", hash_api_key(key)[:12]).exit_code == 0
    assert_problem(client.get("/v1/certifications"), 401)
    assert_problem(client.get("/v1/certifications", headers={"X-API-Key": key}), 401)


def test_webhook_secret_prints_the_tenants_secret_that_the_api_shows(
    data_dir: Path, make_client: AppFactory
) -> None:
    first = keys("webhook-secret", "acme")
    assert first.exit_code == 0, first.stderr
    secret = first.stdout.strip()
    assert secret.startswith("whsec_") and keys("webhook-secret", "acme").stdout.strip() == secret
    rotated = keys("webhook-secret", "acme", "--rotate")
    assert rotated.exit_code == 0 and "rotated" in rotated.stderr
    assert rotated.stdout.strip() != secret
    key = created_key("acme")
    _, client, _ = make_client()  # the same data folder: the stored key turns auth on
    shown = client.get("/v1/webhooks/secret", headers={"X-API-Key": key}).json()["secret"]
    assert shown == rotated.stdout.strip()
    bad = keys("webhook-secret", "no spaces allowed")
    assert bad.exit_code == 2 and "error:" in bad.stderr
