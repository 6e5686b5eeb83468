"""``/``: a page that points a browser at the dashboard and the API docs.

Like ``/docs`` it holds no data and needs no token; it is not an API operation, so it
stays out of the OpenAPI document.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_LINKS = (
    ("/dashboard", "Dashboard", "experiments, allocation over time, reward and tests"),
    ("/docs", "API docs", "every REST operation, with examples (Swagger UI)"),
    ("/redoc", "API reference", "the same document as ReDoc"),
    ("/openapi.json", "OpenAPI document", "for client generators"),
    ("/healthz", "Liveness probe", "answers while the process runs"),
)


@router.get("/")
async def landing(request: Request) -> HTMLResponse:
    items = "\n".join(
        f'  <li><a href="{href}">{label}</a> — {what}</li>' for href, label, what in _LINKS
    )
    title = escape(f"{request.app.title} {request.app.version}")
    page = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>{title}</h1>
<p>Multi-armed-bandit experiments over ONNX model variants.</p>
<ul>
{items}
</ul>
</body>
</html>
"""
    return HTMLResponse(page)
