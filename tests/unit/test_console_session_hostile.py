"""Hostile session cookies and CSRF tokens are refused, never an exception (a 500)."""

from __future__ import annotations

import pytest

from ops.console.session import Sessions

SECRET = b"s" * 40


@pytest.mark.parametrize(
    "cookie", ["é.é", "abc.\u00ff\u00fe", "\ud800.x", "....", "e30.0", "%%%.%%%", "x" * 5000]
)
def test_a_hostile_cookie_is_no_session(cookie: str) -> None:
    assert Sessions(SECRET, max_age_s=3600).load(cookie) is None


@pytest.mark.parametrize("token", ["é", "\u00ff" * 64, "\ud800", "0" * 64])
def test_a_hostile_csrf_token_is_refused(token: str) -> None:
    sessions = Sessions(SECRET, max_age_s=3600)
    session = sessions.load(sessions.dump(sessions.new()))
    assert session is not None
    assert sessions.csrf_ok(session, token) is False
    assert sessions.csrf_ok(session, sessions.csrf_token(session)) is True
