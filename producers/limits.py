"""A request body size limit, enforced before anything parses the body.

A plain ASGI middleware: a declared ``Content-Length`` above the limit is refused
without reading a byte; otherwise the body is read (chunked bodies included) and
refused as soon as it passes the limit, then handed on whole. Buffering is fine:
the limit is the topology's largest payload (``payloads.max_bytes``, 10 MiB by
default) plus room for a batch's framing.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.limits import SNS_MAX_MESSAGE_BYTES
from infra.topology import Topology

#: SNS's message limit (the limit when nothing else is known).
DEFAULT_MAX_BODY_BYTES = SNS_MAX_MESSAGE_BYTES
#: Room above the largest payload for the JSON around it (a batch's framing, keys).
BODY_FRAMING_BYTES = 256 * 1024


def default_max_body_bytes(topology: Topology) -> int:
    """The body limit that admits a payload of ``payloads.max_bytes`` and its framing."""
    return topology.payloads.max_bytes + BODY_FRAMING_BYTES


class BodySizeLimit:
    """Answer 413 to HTTP requests whose body is larger than ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be >= 0, not {max_body_bytes}")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await JSONResponse({"detail": "invalid Content-Length header"}, 400)(
                scope, receive, send
            )
            return
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body exceeds the limit of {self.max_body_bytes} bytes"},
            status_code=413,
            # The rest of the body is left unread: the connection cannot be reused.
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent (chunked), -1 when malformed."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then defers to the server (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
