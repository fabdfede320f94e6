"""``/docs`` (Swagger UI) and ``/redoc`` served from local package assets: no CDN.

Swagger UI comes from the ``swagger-ui-bundle`` distribution and ReDoc's standalone script from
``fastapi-offline``; ``/redoc`` is left out (and logged) when that package is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("plcert.service.docs")

SWAGGER_STATIC = "/static/swagger-ui"
REDOC_STATIC = "/static/redoc"


def swagger_assets_dir() -> Path:
    """Folder with swagger-ui-bundle.js and swagger-ui.css."""
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def redoc_assets_dir() -> Path | None:
    """Folder with redoc.standalone.js, or None when no package ships it."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if (folder / "redoc.standalone.js").is_file() else None


def install_docs(app: FastAPI, *, title: str) -> None:
    """Mount the assets and add /docs and /redoc (the app must have docs_url=None)."""
    app.mount(SWAGGER_STATIC, StaticFiles(directory=swagger_assets_dir()), name="swagger-ui")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API",
            swagger_js_url=f"{SWAGGER_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_STATIC}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    redoc_dir = redoc_assets_dir()
    if redoc_dir is None:
        log.warning("fastapi-offline is not installed: /redoc is not served (no local asset)")
        return
    app.mount(REDOC_STATIC, StaticFiles(directory=redoc_dir), name="redoc")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - API reference",
            redoc_js_url=f"{REDOC_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{REDOC_STATIC}/favicon.png",
            with_google_fonts=False,
        )
