"""Schemathesis against a live `plcert serve` (API and embedded worker) without API keys: zero
failed checks (the run with keys is the ASGI app's, tests/service/test_openapi_fuzz.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.e2e_support import PLCERT, Proc, base_env, free_port, wait_ready
from tests.service.fuzz_support import assert_clean, run, seed_jobs, url_schema

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_schemathesis_finds_nothing_in_a_live_server_without_keys(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # jobs are stored, not run: the fuzz exercises the API (every accepted comparison or study
    # would otherwise queue real certifications on the embedded worker beside it)
    env = base_env(PLCERT_DATA_DIR=str(tmp_path / "data"), PLCERT_DISPATCH="none")
    argv = [*PLCERT, "serve", "--port", str(port)]
    proc = Proc(argv, env, tmp_path / "serve.log")
    try:
        wait_ready(url, proc)

        def post(body: dict[str, Any]) -> int:
            r = httpx.post(f"{url}/v1/certifications", json=body, timeout=60)
            return r.status_code

        seed_jobs(post)
        # no coverage phase: it runs against the ASGI app (fuzz_support's docstring)
        result = run(url_schema(url, None, coverage=False))
    finally:
        proc.stop()
    assert_clean(result)
    assert "Traceback" not in proc.log_text(), proc.log_text()[-4000:]
