"""Fixtures of the service tests: real SQLite files, a real PostgreSQL database, real apps.

PostgreSQL: a fresh database ``plcert_test_<random>`` is created on the server at
``PLCERT_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) for the run
and dropped afterwards. When the server is unreachable the PostgreSQL cases skip with the
reason, unless ``PLCERT_REQUIRE_SYSTEM_TOOLS=1`` (CI), where they fail.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.config import Settings, load_settings
from service.deps import get_dispatcher
from service.main import create_app
from service.store.jobs import JobRecord, JobStore

PG_ADMIN_URL = os.environ.get(
    "PLCERT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef00"


def _pg_unavailable(reason: str) -> None:
    message = f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {reason} (.ci/run starts it)"
    if os.environ.get("PLCERT_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database, dropped at the end of the session."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        _pg_unavailable(f"{type(exc).__name__}: {exc}")
    name = f"plcert_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        # a new connection: the fault tests restart PostgreSQL during the session, which ends
        # every connection opened before
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate(store: JobStore) -> None:
    from sqlalchemy import text

    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM idempotency"))
        conn.execute(text("DELETE FROM api_keys"))
        conn.execute(text("DELETE FROM webhook_secrets"))
        conn.execute(text("DELETE FROM comparisons"))
        conn.execute(text("DELETE FROM jobs"))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty job-store database: a SQLite file, or the PostgreSQL test database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = JobStore(url)
    store.migrate()
    _truncate(store)
    store.dispose()
    yield url


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    """A migrated JobStore on ``store_url``."""
    s = JobStore(store_url)
    s.migrate()
    yield s
    s.dispose()


def new_job(store: JobStore, tenant: str = "t1", **kw: Any) -> JobRecord:
    """Insert a job with placeholder refs."""
    values: dict[str, Any] = {
        "tenant": tenant,
        "model_ref": "a" * 64 + ".json",
        "data_ref": "b" * 64 + ".npz",
        "options": {"budget": "fast"},
        "model_format": "json",
        "data_format": "npz",
        "queue": "cpu",
    }
    values.update(kw)
    return store.create_job(**values)


# ----- payloads --------------------------------------------------------------------------


def mlp_spec(input_dim: int = 3, widths: tuple[int, ...] = (16,), output_dim: int = 1) -> dict:
    """A small MLP spec in the shorthand of CONTRACT.md."""
    return {
        "type": "mlp",
        "input_dim": input_dim,
        "widths": list(widths),
        "output_dim": output_dim,
        "activation": "tanh",
        "parameterization": "ntk",
        "seed": 0,
    }


def npz_bytes(X: np.ndarray, y: np.ndarray) -> bytes:
    """An .npz file with arrays X and y."""
    buf = io.BytesIO()
    np.savez(buf, X=X, y=y)
    return buf.getvalue()


def small_data(n: int = 6, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random samples in d dimensions with one target each."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal(n)


def onnx_mlp_bytes(d: int = 3, h: int = 8, k: int = 1) -> bytes:
    """A Gemm-Tanh-Gemm ONNX model built with onnx.helper (opset 17)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((h, d)).astype(np.float32), "W1"),
        numpy_helper.from_array(np.zeros(h, np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((k, h)).astype(np.float32), "W2"),
        numpy_helper.from_array(np.zeros(k, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1),
        helper.make_node("Tanh", ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", k])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def multipart_files(
    model: bytes | None = None,
    data: bytes | None = None,
    *,
    model_name: str = "model.json",
    data_name: str = "data.npz",
) -> dict[str, tuple[str, bytes, str]]:
    """The ``files=`` of a multipart submission (defaults: a small MLP spec and data)."""
    X, y = small_data()
    return {
        "model": (
            model_name,
            model if model is not None else json.dumps(mlp_spec()).encode(),
            "application/octet-stream",
        ),
        "data": (
            data_name,
            data if data is not None else npz_bytes(X, y),
            "application/octet-stream",
        ),
    }


def json_body(**overrides: Any) -> dict[str, Any]:
    """A JSON submission (small MLP spec, inline data, fast budget)."""
    X, y = small_data()
    body: dict[str, Any] = {
        "model_spec": mlp_spec(),
        "data": {"X": X.tolist(), "y": y.tolist()},
        "options": {"budget": "fast"},
    }
    body.update(overrides)
    return body


# ----- apps ------------------------------------------------------------------------------


class RecordingDispatcher:
    """Stands in for the Celery dispatch boundary: records the jobs it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, job: JobRecord) -> None:
        self.sent.append(job.id)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings on a fresh data folder, dispatch off, no keys unless given."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "dispatch": "none",
        "api_keys": "",
        "database_url": "",
        "log_json": True,
    }
    values.update(overrides)
    return load_settings(**values)


AppFactory = Callable[..., tuple[FastAPI, TestClient, RecordingDispatcher]]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[AppFactory]:
    """Build an app (with settings overrides) and a TestClient; closed after the test."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> tuple[FastAPI, TestClient, RecordingDispatcher]:
        app = create_app(make_settings(tmp_path, **overrides))
        recorder = RecordingDispatcher()
        app.dependency_overrides[get_dispatcher] = lambda: recorder
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        return app, client, recorder

    yield build
    for c in clients:
        c.close()


@pytest.fixture
def client(make_client: AppFactory) -> TestClient:
    """A client of an app without authentication."""
    return make_client()[1]


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """Check an RFC 9457 problem+json answer and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    for field in ("type", "title", "status", "detail"):
        assert field in body, f"{field} missing from {body}"
    assert body["status"] == status
    return body


# ----- a real server -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def plcert_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One `plcert serve` process (API and embedded worker, SQLite, filesystem broker) for the
    session, shared by the tests that submit jobs and read them back (clients, CI gates).
    Tests must not assume it is empty: other tests' jobs are there too."""
    from tests.service.e2e_support import embedded_server

    with embedded_server(tmp_path_factory.mktemp("plcert-server")) as srv:
        yield srv
