"""Fixtures for worker tests: real SQLite job stores and artifact stores in tmp folders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Settings, load_settings
from service.store.artifacts import ArtifactStore
from service.store.jobs import JobRecord, JobStore

TINY_SPEC = {
    "type": "mlp",
    "input_dim": 3,
    "widths": [16],
    "output_dim": 1,
    "activation": "tanh",
    "seed": 0,
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, lease_s=2.0, queued_orphan_after_s=5.0)


@pytest.fixture
def store(settings: Settings) -> Iterator[JobStore]:
    s = JobStore(settings.resolved_database_url)
    s.migrate()
    yield s
    s.dispose()


@pytest.fixture
def artifacts(settings: Settings) -> ArtifactStore:
    return ArtifactStore(settings.artifacts_dir)


def make_slow_job(settings: Settings, options: dict[str, object]) -> tuple[JobStore, JobRecord]:
    """A fresh job store under ``settings`` with one queued job of the e2e suite's slow spec."""
    from tests.service.e2e_support import SLOW_DATA, SLOW_SPEC

    settings.ensure_dirs()
    store = JobStore(settings.resolved_database_url)
    store.migrate()
    artifacts = ArtifactStore(settings.artifacts_dir)
    job = make_job(
        store,
        artifacts,
        model=json.dumps(SLOW_SPEC).encode(),
        data=json.dumps(SLOW_DATA).encode(),
        options=options,
        queue=settings.queue_cpu,
    )
    return store, job


def make_job(
    store: JobStore,
    artifacts: ArtifactStore,
    *,
    model: bytes | None = None,
    data: bytes | None = None,
    options: dict[str, object] | None = None,
    queue: str = "cpu",
) -> JobRecord:
    """A queued job whose model and data are in the artifact store (tiny MLP by default)."""
    model = model if model is not None else json.dumps(TINY_SPEC).encode()
    if data is None:
        xs = [[0.1 * i, -0.2 * i, 0.05 * i * i] for i in range(4)]
        data = json.dumps({"X": xs, "y": [0.1 * i for i in range(4)]}).encode()
    return store.create_job(
        tenant="default",
        model_ref=artifacts.put(model, suffix=".json"),
        data_ref=artifacts.put(data, suffix=".json"),
        options=options or {"budget": "fast"},
        model_format="json",
        data_format="json",
        queue=queue,
    )
