"""The API key check, done from the request's headers before anything reads its body.

A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which would wrap
the body stream): a request to any route but the public ones
(:data:`PUBLIC_PATHS`) must present a configured key, else it is answered 401 at
once — its body is never read, never parsed, and the connection is closed instead
of waiting for it. A request with a valid key goes on with the key in its scope
(:func:`request_key`), where :class:`producers.guard.Guard` finds it; authorization
(the key's job types, 403) and rate limits (429) stay route dependencies.
``keys=None`` (``CONVEYOR_API_AUTH=none``): every request goes on.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from producers.auth import ApiKey, KeyRing, presented_key

#: Routes anyone may call: health, readiness, metrics and the API's documentation.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
#: Where the key of an authenticated request is kept in its ASGI scope.
SCOPE_KEY = "conveyor.api_key"

MISSING_KEY = "an API key is required (Authorization: Bearer <key>)"
INVALID_KEY = "the API key is not valid"


def request_key(scope: Scope) -> ApiKey | None:
    """The key :class:`ApiKeyGate` found for this request (None: none checked)."""
    key = scope.get(SCOPE_KEY)
    return key if isinstance(key, ApiKey) else None


def _header(scope: Scope, name: bytes) -> str | None:
    for header, value in scope["headers"]:
        if header == name:
            return bytes(value).decode("latin-1")
    return None


def _has_body(scope: Scope) -> bool:
    """Whether the client announced a body (which a refusal leaves unread)."""
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip() != "0"
    return _header(scope, b"transfer-encoding") is not None


class ApiKeyGate:
    """401 for a request without a valid key, before its body is read."""

    def __init__(
        self,
        app: ASGIApp,
        ring: KeyRing | None,
        on_rejected: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.ring = ring
        self.on_rejected = on_rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.ring is None or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization")
        x_api_key = _header(scope, b"x-api-key")
        key = self.ring.find(presented_key(authorization, x_api_key))
        if key is None:
            if self.on_rejected is not None:
                self.on_rejected()
            headers = {"WWW-Authenticate": "Bearer"}
            if _has_body(scope):
                # The body stays unread: the connection cannot carry another request,
                # and the server must not wait for the body to arrive.
                headers["Connection"] = "close"
            detail = INVALID_KEY if authorization or x_api_key else MISSING_KEY
            await JSONResponse({"detail": detail}, 401, headers=headers)(scope, receive, send)
            return
        scope[SCOPE_KEY] = key
        await self.app(scope, receive, send)
