"""Schemathesis against the ASGI app, without and with API keys: zero failed checks (the
coverage phase in the run with keys only)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import ALICE_KEY, AppFactory
from tests.service.fuzz_support import asgi_schema, assert_clean, run, seed_jobs

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("keys", [False, True], ids=["no-keys", "keys"])
def test_schemathesis_finds_nothing_in_the_asgi_app(make_client: AppFactory, keys: bool) -> None:
    app, client, _ = make_client(api_keys=f"alice:{ALICE_KEY}" if keys else "")
    headers = {"X-API-Key": ALICE_KEY} if keys else {}

    def post(body: dict[str, Any]) -> int:
        return client.post("/v1/certifications", json=body, headers=headers).status_code

    seed_jobs(post)
    assert isinstance(client, TestClient)
    # the coverage phase runs once, here with keys (fuzz_support's docstring)
    assert_clean(run(asgi_schema(app, ALICE_KEY if keys else None, coverage=keys)))
