"""The API request's server span: an ASGI middleware over :func:`infra.tracing.server_span`.

Added by :func:`producers.app.create_app` only when tracing is on (the ``OTEL_*``
variables): off, requests do not pass through it at all. The span's parent is the
client's ``traceparent`` header (or an X-Ray header, per ``OTEL_PROPAGATORS``);
the publish spans of the request are its children.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra import tracing

#: Probes and scrapes: not worth a trace each.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class TraceRequests:
    """Wraps every HTTP request (but :data:`UNTRACED_PATHS`) in a server span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        method = scope["method"]
        with tracing.server_span(method, scope["path"], headers) as span:
            status: dict[str, int] = {}

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = int(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                code = status.get("code", 500)
                span.set(http__response__status_code=code)
                if code >= 500:
                    span.fail(f"HTTP {code}")
