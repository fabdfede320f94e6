"""/docs, /redoc and /openapi.json: local assets only; API key scheme and Problem schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import require_system_tool, run_chromium
from tests.service.conftest import ALICE_KEY, AppFactory


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_uses_only_local_assets_that_answer(make_client: AppFactory, page: str) -> None:
    _, client, _ = make_client()
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "cdn" not in html.lower()
    assert not re.search(r"https?://", html), re.findall(r"https?://[^\"' ]+", html)
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert assets, "the page loads no assets"
    for url in assets:
        got = client.get(url)
        assert got.status_code == 200, url
        assert len(got.content) > 100, url


def test_openapi_has_api_key_scheme_problem_schema_and_both_submit_bodies(
    make_client: AppFactory,
) -> None:
    _, client, _ = make_client(api_keys=f"alice:{ALICE_KEY}")
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKey"]["description"],
    }
    assert "ProblemDetails" in spec["components"]["schemas"]
    assert "CertificationCreateJSON" in spec["components"]["schemas"]
    post = spec["paths"]["/v1/certifications"]["post"]
    assert {"ApiKey": []} in post["security"]
    assert set(post["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert "application/problem+json" in post["responses"]["422"]["content"]
    get = spec["paths"]["/v1/certifications/{job_id}"]["get"]
    assert "404" in get["responses"]
    # every $ref resolves
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', client.get("/openapi.json").text))
    assert refs <= set(spec["components"]["schemas"])


def test_every_documented_error_answer_is_problem_json(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    spec = client.get("/openapi.json").json()
    errors = [
        (path, method, code, resp)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        for code, resp in op["responses"].items()
        if code.startswith(("4", "5"))
    ]
    assert errors
    for path, method, code, resp in errors:
        assert list(resp["content"]) == ["application/problem+json"], (path, method, code)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_root_redirects_to_the_docs(make_client: AppFactory) -> None:
    _, client, _ = make_client()
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/docs"


def _serve_in_thread(app: object) -> tuple[object, int]:
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))  # type: ignore[arg-type]
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return server, port


@pytest.mark.parametrize(
    ("page", "expected"),
    [("/docs", ["Authorize", "/v1/certifications"]), ("/redoc", ["/v1/certifications"])],
)
def test_docs_render_in_a_real_browser(
    tmp_path: Path, make_client: AppFactory, page: str, expected: list[str]
) -> None:
    """Swagger UI must understand FastAPI's OpenAPI 3.1 (Swagger UI 4 shows an error page)."""
    require_system_tool("chromium", "renders /docs and /redoc")
    # With keys configured (without, the document has no security scheme and no Authorize).
    app, _, _ = make_client(api_keys=f"alice:{ALICE_KEY}")
    server, port = _serve_in_thread(app)
    try:
        run = run_chromium(
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"http://127.0.0.1:{port}{page}",
            profile=tmp_path / "chromium",
        )
        assert run.returncode == 0, run.stderr[-2000:]
        dom = run.stdout
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
    assert "Unable to render" not in dom
    for text in expected:
        assert text in dom, f"{text!r} missing from the rendered {page}"
