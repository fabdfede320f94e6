"""Idempotency-Keys expire after ``idempotency_ttl_s`` (PLCERT_IDEMPOTENCY_TTL_S).

Runs on a real SQLite file and a real PostgreSQL database; time is moved with the store's
``now`` parameter instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.config import ConfigError
from service.main import create_app
from service.store.jobs import IdempotencyConflict, JobStore, utcnow
from service.store.models import idempotency
from tests.service.conftest import make_settings

TTL_S = 60.0

JOB = {
    "tenant": "t1",
    "model_ref": "a" * 64 + ".json",
    "data_ref": "b" * 64 + ".npz",
    "options": {"budget": "fast"},
    "model_format": "json",
    "data_format": "npz",
    "queue": "cpu",
}


@pytest.fixture
def ttl_store(store_url: str) -> Iterator[JobStore]:
    """A JobStore whose Idempotency-Keys hold for TTL_S seconds."""
    s = JobStore(store_url, idempotency_ttl_s=TTL_S)
    yield s
    s.dispose()


def keys_of(store: JobStore, tenant: str) -> set[str]:
    with store.engine.connect() as conn:
        return set(
            conn.execute(select(idempotency.c.key).where(idempotency.c.tenant == tenant)).scalars()
        )


def test_replay_within_the_ttl_returns_the_same_job(ttl_store: JobStore) -> None:
    t0 = utcnow()
    a, created_a = ttl_store.create_job_idempotent(
        idempotency_key="k", body_sha256="h", now=t0, **JOB
    )
    later = t0 + timedelta(seconds=TTL_S - 1)
    b, created_b = ttl_store.create_job_idempotent(
        idempotency_key="k", body_sha256="h", now=later, **JOB
    )
    assert (created_a, created_b) == (True, False) and a.id == b.id
    found = ttl_store.find_idempotent(tenant="t1", key="k", now=later)
    assert found is not None and found[1].id == a.id
    with pytest.raises(IdempotencyConflict, match="with a different request body"):
        ttl_store.create_job_idempotent(idempotency_key="k", body_sha256="h2", now=later, **JOB)


def test_replay_after_the_ttl_creates_a_new_job(ttl_store: JobStore) -> None:
    t0 = utcnow()
    a, _ = ttl_store.create_job_idempotent(idempotency_key="k", body_sha256="h", now=t0, **JOB)
    after = t0 + timedelta(seconds=TTL_S + 1)
    assert ttl_store.find_idempotent(tenant="t1", key="k", now=after) is None
    b, created = ttl_store.create_job_idempotent(
        idempotency_key="k", body_sha256="h", now=after, **JOB
    )
    assert created and b.id != a.id
    assert ttl_store.get_job(a.id) is not None  # the old job stays; only its key expired
    # The key now names the new job, for another TTL.
    c, created_c = ttl_store.create_job_idempotent(
        idempotency_key="k", body_sha256="h", now=after + timedelta(seconds=1), **JOB
    )
    assert not created_c and c.id == b.id


def test_expired_key_may_be_reused_with_another_body(ttl_store: JobStore) -> None:
    t0 = utcnow()
    ttl_store.create_job_idempotent(idempotency_key="k", body_sha256="h", now=t0, **JOB)
    _, created = ttl_store.create_job_idempotent(
        idempotency_key="k", body_sha256="other", now=t0 + timedelta(seconds=TTL_S + 1), **JOB
    )
    assert created


def test_storing_a_key_purges_the_tenants_expired_keys_only(ttl_store: JobStore) -> None:
    t0 = utcnow()
    for key in ("old1", "old2"):
        ttl_store.create_job_idempotent(idempotency_key=key, body_sha256="h", now=t0, **JOB)
    ttl_store.create_job_idempotent(
        idempotency_key="old-other-tenant", body_sha256="h", now=t0, **{**JOB, "tenant": "t2"}
    )
    fresh_at = t0 + timedelta(seconds=TTL_S / 2)
    ttl_store.create_job_idempotent(idempotency_key="fresh", body_sha256="h", now=fresh_at, **JOB)
    assert keys_of(ttl_store, "t1") == {"old1", "old2", "fresh"}  # nothing expired yet

    ttl_store.create_job_idempotent(
        idempotency_key="new", body_sha256="h", now=t0 + timedelta(seconds=TTL_S + 1), **JOB
    )
    assert keys_of(ttl_store, "t1") == {"fresh", "new"}
    assert keys_of(ttl_store, "t2") == {"old-other-tenant"}
    with ttl_store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(idempotency)).scalar_one() == 3


def test_default_store_keeps_keys_for_a_day(store: JobStore) -> None:
    assert store.idempotency_ttl_s == 86400.0
    t0 = utcnow()
    a, _ = store.create_job_idempotent(idempotency_key="k", body_sha256="h", now=t0, **JOB)
    found = store.find_idempotent(tenant="t1", key="k", now=t0 + timedelta(hours=23))
    assert found is not None and found[1].id == a.id
    assert store.find_idempotent(tenant="t1", key="k", now=t0 + timedelta(hours=25)) is None


def test_store_refuses_a_ttl_that_is_not_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="idempotency_ttl_s must be > 0, got 0"):
        JobStore(f"sqlite:///{tmp_path / 'x.db'}", idempotency_ttl_s=0)


def test_setting_is_validated_and_reaches_the_apps_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLCERT_IDEMPOTENCY_TTL_S", "0")
    with pytest.raises(ConfigError, match="idempotency_ttl_s: Input should be greater than 0"):
        make_settings(tmp_path)
    monkeypatch.setenv("PLCERT_IDEMPOTENCY_TTL_S", "120")
    settings = make_settings(tmp_path)
    assert settings.idempotency_ttl_s == 120.0
    app = create_app(settings)
    try:
        assert app.state.store.idempotency_ttl_s == 120.0
    finally:
        app.state.store.dispose()
