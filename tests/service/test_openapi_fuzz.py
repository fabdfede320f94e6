"""Schemathesis against the ASGI app with API keys, all four phases: zero failed checks (the run
without keys is the live server's, tests/service/test_e2e_openapi_fuzz.py)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import ALICE_KEY, AppFactory
from tests.service.fuzz_support import asgi_schema, assert_clean, run, seed_jobs

pytestmark = pytest.mark.slow


def test_schemathesis_finds_nothing_in_the_asgi_app_with_keys(make_client: AppFactory) -> None:
    app, client, _ = make_client(api_keys=f"alice:{ALICE_KEY}")
    headers = {"X-API-Key": ALICE_KEY}

    def post(body: dict[str, Any]) -> int:
        return client.post("/v1/certifications", json=body, headers=headers).status_code

    seed_jobs(post)
    assert isinstance(client, TestClient)
    # the coverage phase runs once, here (fuzz_support's docstring)
    assert_clean(run(asgi_schema(app, ALICE_KEY, coverage=True)))
