"""``/docs`` and ``/redoc``: the API docs, served with the package's own copies of their assets.

FastAPI's default pages load Swagger UI and ReDoc from a CDN and fonts from Google, so
they are blank without internet. These pages load everything from ``/static/vendor/``
(see ``api/static/vendor/README.md`` for versions and licences); like ``/openapi.json``
they hold no data and need no token.

:func:`keep_example_nulls` puts back the ``null`` values FastAPI drops from examples when
it builds ``/openapi.json``, so an example shows the answer as the service sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

from api.errors import NotFoundError
from api.routes._responses import NULL_MARK

__all__ = ["keep_example_nulls", "router"]

router = APIRouter(include_in_schema=False)

VENDOR: Final = Path(__file__).resolve().parents[1] / "static" / "vendor"
# A fixed map of the shipped files, so no path from the URL ever reaches the file system.
_ASSETS: Final = {p.name: p for p in sorted(VENDOR.iterdir()) if p.is_file()}
# The files change only with the package version.
_CACHE: Final = {"Cache-Control": "public, max-age=86400"}
_OAUTH2_REDIRECT: Final = "/docs/oauth2-redirect"


def _title(request: Request) -> str:
    return str(request.app.title)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{_title(request)} — API",
        swagger_js_url="/static/vendor/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui.css",
        swagger_favicon_url="/static/vendor/swagger-ui-favicon-32x32.png",
        oauth2_redirect_url=_OAUTH2_REDIRECT,
        # No badge that would ask validator.swagger.io about the document.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(_OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{_title(request)} — API",
        redoc_js_url="/static/vendor/redoc.standalone.js",
        redoc_favicon_url="/static/vendor/swagger-ui-favicon-32x32.png",
        # ReDoc falls back to the system's sans-serif fonts.
        with_google_fonts=False,
    )


@router.get("/static/vendor/{name}")
async def vendor_asset(name: str) -> FileResponse:
    found = _ASSETS.get(name)
    if found is None:
        msg = f"No vendored file {name!r}."
        raise NotFoundError(msg, code="asset_not_found")
    return FileResponse(found, headers=_CACHE)


def _unmark(node: Any) -> Any:
    if node == NULL_MARK:
        return None
    if isinstance(node, dict):
        return {k: _unmark(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unmark(v) for v in node]
    return node


def keep_example_nulls(app: FastAPI) -> None:
    """Make ``app.openapi()`` keep the ``null`` values of the routes' examples.

    FastAPI encodes the document with ``exclude_none``, which also strips every ``null``
    from an example (``"details": null`` of the error envelope, ``"scores": null`` of a
    prediction). The examples carry :data:`NULL_MARK` instead (see
    :func:`api.routes._responses.example`), turned back into ``null`` here.
    """
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        cached = app.openapi_schema
        document = build()
        if document is not cached:
            document = app.openapi_schema = _unmark(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
