"""Raw ASGI requests for tests that drive the app below the HTTP client (stalled bodies)."""

from __future__ import annotations

from typing import Any


def post_scope(path: str, content_type: bytes = b"application/json") -> dict[str, Any]:
    """The ASGI scope of a POST to ``path`` from a loopback client."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", content_type), (b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "state": {},
    }
