"""``/docs`` (Swagger UI) and ``/redoc`` served from local package assets: no CDN.

Both come from the ``fastapi-offline`` distribution, which ships Swagger UI 5 (needed for the
OpenAPI 3.1 document FastAPI writes; the ``swagger-ui-bundle`` package ships Swagger UI 4, which
renders "Unable to render this definition" for 3.1) and ReDoc's standalone script. ``/`` redirects
to ``/docs``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

DOCS_STATIC = "/static/docs"


def docs_assets_dir() -> Path:
    """Folder with swagger-ui-bundle.js, swagger-ui.css and redoc.standalone.js."""
    import fastapi_offline

    folder = Path(fastapi_offline.__file__).parent / "static"
    missing = [
        f
        for f in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
        if not (folder / f).is_file()
    ]
    if missing:
        raise RuntimeError(f"fastapi-offline at {folder} lacks {missing}: reinstall it")
    return folder


def install_docs(app: FastAPI, *, title: str) -> None:
    """Mount the assets and add /, /docs and /redoc (the app must have docs_url=None)."""
    app.mount(DOCS_STATIC, StaticFiles(directory=docs_assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - API reference",
            redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_STATIC}/favicon.png",
            with_google_fonts=False,
        )
