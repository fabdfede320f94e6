"""`plcert gc [--dry-run]` on a real SQLite job store and artifact folder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.config import get_settings
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobStore, utcnow
from service.store.models import jobs
from tests.service.conftest import new_job

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "data"
    monkeypatch.setenv("PLCERT_DATA_DIR", str(path))
    for name in ("PLCERT_DATABASE_URL", "PLCERT_API_KEYS", "PLCERT_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def _finished_job(data_dir: Path, days_ago: float) -> tuple[str, str]:
    """A succeeded job that finished ``days_ago`` days ago; (its id, its data ref)."""
    path = data_dir / "plcert.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    store = JobStore(f"sqlite:///{path}")
    store.migrate()
    artifacts = ArtifactStore(data_dir / "artifacts")
    try:
        job = new_job(
            store,
            model_ref=artifacts.put(f"model {days_ago}".encode(), suffix=".json"),
            data_ref=artifacts.put(f"data {days_ago}".encode(), suffix=".npz"),
        )
        claimed = store.claim(job.id, worker_id="w", lease_s=60)
        assert claimed is not None
        assert store.finish(job.id, attempt=1, status="succeeded")
        with store.engine.begin() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job.id)
                .values(finished_at=utcnow() - timedelta(days=days_ago))
            )
        return job.id, job.data_ref
    finally:
        store.dispose()


def test_gc_dry_run_lists_and_gc_removes_the_expired_jobs(data_dir: Path) -> None:
    old, old_data = _finished_job(data_dir, days_ago=31)
    new, new_data = _finished_job(data_dir, days_ago=29)
    artifacts = ArtifactStore(data_dir / "artifacts")

    dry = runner.invoke(cli, ["gc", "--dry-run"])
    assert dry.exit_code == 0, dry.stderr
    assert f"would remove job {old}" in dry.stdout and new not in dry.stdout
    assert f"would remove file {old_data}" in dry.stdout
    assert "dry run: would remove 1 jobs" in dry.stdout and "and 2 files" in dry.stdout
    assert artifacts.exists(old_data)

    done = runner.invoke(cli, ["gc"])
    assert done.exit_code == 0, done.stderr
    assert f"removed job {old}" in done.stdout and "removed 1 jobs" in done.stdout
    assert not artifacts.exists(old_data) and artifacts.exists(new_data)
    store = JobStore(f"sqlite:///{data_dir / 'plcert.db'}")
    try:
        assert store.get_job(old) is None and store.get_job(new) is not None
    finally:
        store.dispose()
    again = runner.invoke(cli, ["gc"])
    assert again.exit_code == 0 and "removed 0 jobs" in again.stdout


def test_gc_with_retention_off_removes_nothing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, old_data = _finished_job(data_dir, days_ago=1000)
    monkeypatch.setenv("PLCERT_RETENTION_DAYS", "0")
    get_settings.cache_clear()
    result = runner.invoke(cli, ["gc"])
    assert result.exit_code == 0 and "retention is off" in result.stdout
    assert ArtifactStore(data_dir / "artifacts").exists(old_data)


def test_gc_with_a_bad_setting_exits_2(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLCERT_RETENTION_DAYS", "a month")
    get_settings.cache_clear()
    result = runner.invoke(cli, ["gc"])
    assert result.exit_code == 2
    assert "retention_days" in result.stderr and "Traceback" not in result.output


def test_gc_with_an_unreachable_database_exits_2(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLCERT_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    get_settings.cache_clear()
    result = runner.invoke(cli, ["gc", "--dry-run"])
    assert result.exit_code == 2 and "cannot open the job store" in result.stderr
