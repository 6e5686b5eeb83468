"""A byte limit on request bodies, enforced before anything parses them.

The limit is checked against ``Content-Length`` up front and against the bytes actually
received as they stream in, so a chunked body (no length) or a client that lies about its
length is cut off at the limit too. Model uploads get their own, larger limit; every other
body (predict, feedback, the policy API) gets ``BANDITLAKE_MAX_BODY_BYTES``.

A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` would cost every request an
extra task and stream copy.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PayloadTooLargeError, error_body

__all__ = ["BodyLimitMiddleware"]


def _too_large(limit: int, size: int | None) -> JSONResponse:
    seen = f"The request body ({size} bytes)" if size is not None else "The request body"
    msg = f"{seen} is larger than the {limit}-byte limit for this endpoint."
    return JSONResponse(error_body("payload_too_large", msg, {"limit_bytes": limit}), 413)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit: int, upload_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit

    def _limit_for(self, scope: Scope) -> int:
        path: str = scope["path"]
        uploads = scope["method"] == "POST" and path.startswith("/v1/experiments/")
        if uploads and path.rstrip("/").endswith("/variants"):
            return self.upload_limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await _too_large(limit, int(value))(scope, receive, send)
                    return
                break
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    msg = f"The request body is larger than the {limit}-byte limit."
                    raise PayloadTooLargeError(msg, details={"limit_bytes": limit})
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # Whatever the app made of the cut-off body (a parse error, a 400 from the
                # form parser), the client is told the one true reason.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _too_large(limit, None)(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except PayloadTooLargeError:
            if not started:
                await _too_large(limit, None)(scope, receive, send)
