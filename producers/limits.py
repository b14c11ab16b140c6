"""A request body size limit and read deadline, enforced before anything parses the body.

A plain ASGI middleware: a declared ``Content-Length`` above the limit is refused
(413) without reading a byte; otherwise the body is read (chunked bodies included)
and refused as soon as it passes the limit — nothing beyond the limit is buffered —
then handed on whole. A body that is not complete within ``body_timeout_s`` of the
first read is cut off with 408, so a client trickling its body cannot hold a
request open. Buffering up to the limit is fine: the limit is the topology's
largest payload (``payloads.max_bytes``, 10 MiB by default) plus room for a
batch's framing, and :mod:`producers.gate` has checked the API key before this runs.
"""

from __future__ import annotations

from enum import Enum

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.limits import SNS_MAX_MESSAGE_BYTES
from infra.topology import Topology

#: SNS's message limit (the limit when nothing else is known).
DEFAULT_MAX_BODY_BYTES = SNS_MAX_MESSAGE_BYTES
#: Room above the largest payload for the JSON around it (a batch's framing, keys).
BODY_FRAMING_BYTES = 256 * 1024


class _Stop(Enum):
    """Why :meth:`BodySizeLimit._read` returned no body."""

    TOO_LARGE = "too large"
    DISCONNECTED = "disconnected"


def default_max_body_bytes(topology: Topology) -> int:
    """The body limit that admits a payload of ``payloads.max_bytes`` and its framing."""
    return topology.payloads.max_bytes + BODY_FRAMING_BYTES


class BodySizeLimit:
    """Answer 413 to a body above ``max_body_bytes``, 408 to one slower than ``body_timeout_s``.

    ``body_timeout_s=None``: no deadline.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        body_timeout_s: float | None = None,
    ) -> None:
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be >= 0, not {max_body_bytes}")
        if body_timeout_s is not None and body_timeout_s <= 0:
            raise ValueError(f"body_timeout_s must be > 0, not {body_timeout_s}")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

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
        body: bytes | _Stop = _Stop.DISCONNECTED
        with anyio.move_on_after(self.body_timeout_s) as deadline:
            body = await self._read(receive)
        if deadline.cancelled_caught:
            await _close_with(
                408,
                f"the request body did not arrive within {self.body_timeout_s:g} s",
                scope,
                receive,
                send,
            )
            return
        if body is _Stop.DISCONNECTED:
            return  # the client went away: nobody to answer
        if body is _Stop.TOO_LARGE:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | _Stop:
        """The whole body; TOO_LARGE as soon as it passes the limit (the rest stays unread)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _Stop.DISCONNECTED
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return _Stop.TOO_LARGE
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body exceeds the limit of {self.max_body_bytes} bytes"
        await _close_with(413, detail, scope, receive, send)


async def _close_with(status: int, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``status`` and close: the rest of the body is left unread, so the
    connection cannot be reused."""
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
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
