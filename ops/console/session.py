"""Signed session cookies and the CSRF tokens bound to them.

A session is a small JSON document (a random session id, and once logged in the key's
name and console role, an expiry time) in the cookie, followed by its HMAC-SHA256
under the console's secret: the server keeps no session table, so any replica with
the same secret reads it, and a tampered or expired cookie is simply no session.
The secret is random per process unless ``CONVEYOR_CONSOLE_SESSION_SECRET`` sets it,
so restarting the console logs everyone out (documented in docs/settings.md).

Every visitor gets a session (anonymous until login), so even the login form carries
a CSRF token. The token is the HMAC of the session id: bound to the session, it needs
no storage, and a forged cross-site form cannot know it. Logging in starts a new
session id (no session fixation). The cookie is HttpOnly, SameSite=Strict and, over
TLS, Secure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from ops.console.deps import Principal

#: The session cookie's name.
COOKIE = "conveyor_console"
#: The form field and the header that carry the CSRF token.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
#: A configured secret shorter than this is refused (it signs every session).
MIN_SECRET_CHARS = 32


def new_secret() -> bytes:
    """A random signing secret (one per process when none is configured)."""
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class Session:
    """One visitor's session; ``principal`` is None until a key logged in."""

    sid: str
    expires_at: float
    principal: Principal | None = None


class Sessions:
    """Makes, signs and reads sessions with one secret."""

    def __init__(self, secret: bytes, max_age_s: float) -> None:
        self._secret = secret
        self.max_age_s = max_age_s

    def new(self, principal: Principal | None = None) -> Session:
        """A fresh session (a new id: logging in never keeps the old one)."""
        expires_at = float(int(time.time() + self.max_age_s))  # whole seconds, as in the cookie
        return Session(secrets.token_urlsafe(18), expires_at, principal)

    def _mac(self, data: bytes) -> str:
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def dump(self, session: Session) -> str:
        """The cookie value: base64url(JSON) ``.`` HMAC."""
        doc: dict[str, object] = {"sid": session.sid, "exp": int(session.expires_at)}
        if session.principal is not None:
            doc["name"] = session.principal.name
            doc["role"] = session.principal.role
        data = base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode())
        return f"{data.decode()}.{self._mac(data)}"

    def load(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``; None if absent, tampered with, malformed or expired."""
        if not cookie or "." not in cookie:
            return None
        data, _, mac = cookie.rpartition(".")
        # As bytes: compare_digest raises TypeError on a str with non-ASCII characters,
        # and a cookie is whatever the client sent.
        if not hmac.compare_digest(_raw(mac), _raw(self._mac(_raw(data)))):
            return None
        try:
            doc = json.loads(base64.urlsafe_b64decode(_raw(data)))
            sid, expires_at = str(doc["sid"]), float(doc["exp"])
            name, role = doc.get("name"), doc.get("role")
        except (ValueError, KeyError, TypeError):
            return None
        if expires_at < time.time():
            return None
        principal = None
        if isinstance(name, str) and role in ("viewer", "operator"):
            principal = Principal(name, role)
        return Session(sid, expires_at, principal)

    def csrf_token(self, session: Session) -> str:
        """The CSRF token of ``session``."""
        return self._mac(f"csrf:{session.sid}".encode())

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        """Whether ``token`` is ``session``'s CSRF token (constant time)."""
        if session is None or not token:
            return False
        return hmac.compare_digest(_raw(token), _raw(self.csrf_token(session)))


def _raw(text: str) -> bytes:
    """``text`` from the client as bytes, whatever characters it holds."""
    return text.encode("utf-8", "surrogatepass")
