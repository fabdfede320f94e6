"""service.errors: every plcore error is mapped; every error answer is problem+json."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError, OperationalError

from plcore import errors as E
from service.errors import (
    PLCORE_STATUS,
    PLCORE_TITLE,
    ProblemException,
    job_error,
    job_status_for,
    status_for,
)
from service.store.artifacts import StorageFull
from tests.service.conftest import AppFactory, assert_problem


def test_every_plcore_error_class_is_mapped() -> None:
    missing = [c.__name__ for c in E.ALL_ERRORS if c not in PLCORE_STATUS or c not in PLCORE_TITLE]
    assert missing == []
    assert set(PLCORE_STATUS) == set(E.ALL_ERRORS)


def test_every_plcert_error_subclass_is_in_all_errors() -> None:
    def subclasses(cls: type) -> set[type]:
        out: set[type] = set(cls.__subclasses__())
        for sub in list(out):
            out |= subclasses(sub)
        return out

    plcore_classes = {c for c in subclasses(E.PlcertError) if c.__module__ == "plcore.errors"}
    assert plcore_classes <= set(E.ALL_ERRORS)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (E.ModelFormatError("x"), 422),
        (E.ShapeMismatchError("x"), 422),
        (E.NonDeterministicModelError("x"), 422),
        (E.ResourceLimitError("x"), 413),
        (E.NumericalError("x"), 500),
        (E.Cancelled("x"), 409),
        (ProblemException(418, "teapot"), 418),
        (RuntimeError("x"), 500),
        (StorageFull(10), 507),
        (OperationalError("SELECT 1", {}, Exception("connection refused")), 503),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), 500),
    ],
)
def test_status_for(exc: BaseException, status: int) -> None:
    assert status_for(exc) == status


def test_subclass_of_a_mapped_error_inherits_its_status() -> None:
    class MyDatasetError(E.DatasetError):
        pass

    assert status_for(MyDatasetError("x")) == 422


def test_job_error_and_status_for_worker() -> None:
    assert job_status_for(E.Cancelled("stop")) == "canceled"
    assert job_status_for(E.DatasetError("bad")) == "failed"
    err = job_error(E.DatasetError("X has 3 non-finite values"))
    assert err == {
        "type": "urn:plcert:problem:dataset",
        "title": "Invalid dataset",
        "detail": "X has 3 non-finite values",
        "status": 422,
    }
    internal = job_error(KeyError("secret path /etc/x"))
    assert "secret" not in internal["detail"] and internal["status"] == 500
    full = job_error(StorageFull(2048))
    assert full["type"] == "urn:plcert:problem:insufficient-storage"
    assert full["status"] == 507 and "2048 bytes" in full["detail"]
    assert "disk is full" in full["detail"]


def _app_with_raising_routes(app: FastAPI) -> None:
    @app.get("/raise/plcore")
    async def raise_plcore() -> None:
        raise E.ResourceLimitError("n = 10^6 samples exceeds the limit 10^5")

    @app.get("/raise/full")
    def raise_full() -> None:
        raise StorageFull(4096)

    @app.get("/raise/database")
    def raise_database() -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    @app.get("/raise/crash")
    async def raise_crash() -> None:
        raise RuntimeError("password=hunter2 at /srv/secret.py")


def test_problem_bodies_for_404_405_422(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    assert_problem(client.get("/no/such/route"), 404)
    assert_problem(client.delete("/healthz"), 405)
    body = assert_problem(client.get("/v1/certifications", params={"limit": "many"}), 422)
    assert body["errors"][0]["loc"] == ["query", "limit"]


def test_plcore_error_raised_in_a_route_is_mapped(make_client: AppFactory) -> None:
    app, client, _ = make_client()
    _app_with_raising_routes(app)
    body = assert_problem(client.get("/raise/plcore"), 413)
    assert body["type"] == "urn:plcert:problem:resource-limit"
    assert "10^5" in body["detail"]


def test_unhandled_exception_is_a_500_without_internals(make_client: AppFactory) -> None:
    app, client, _ = make_client()
    _app_with_raising_routes(app)
    r = client.get("/raise/crash", headers={"X-Request-ID": "crash-1"})
    body = assert_problem(r, 500)
    assert body["type"] == "urn:plcert:problem:internal"
    assert "hunter2" not in r.text and "secret" not in r.text and "RuntimeError" not in r.text
    assert r.headers["x-request-id"] == "crash-1"


def test_a_full_disk_is_a_507_and_an_unreachable_database_a_503(make_client: AppFactory) -> None:
    app, client, _ = make_client()
    _app_with_raising_routes(app)
    body = assert_problem(client.get("/raise/full"), 507)
    assert body["type"] == "urn:plcert:problem:insufficient-storage"
    assert "4096 bytes" in body["detail"] and "nothing was stored" in body["detail"]
    r = client.get("/raise/database")
    body = assert_problem(r, 503)
    assert body["type"] == "urn:plcert:problem:database-unavailable"
    assert r.headers["retry-after"] == "5"
    assert "server closed" not in r.text
