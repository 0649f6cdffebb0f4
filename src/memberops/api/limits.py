"""Request size limits, enforced before the body reaches a parser."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memberops.api.errors import problem


class BodySizeLimit:
    """Answer 413 to a request whose declared or actual body exceeds ``max_bytes``.

    A declared ``Content-Length`` is refused before anything is read; a chunked body is counted as it
    streams, and the read that crosses the limit raises a 413 ``HTTPException`` — FastAPI lets those
    through its body parsing (other errors become a 400), and the error handlers render the problem.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request bodies are limited to {self.max_bytes} bytes"
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await problem(413, "request_too_large", detail)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, limited_receive, send)
