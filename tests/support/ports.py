"""Loopback ports for the processes tests start: never a fixed number (tests run in parallel)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nothing listens on right now.

    For a process to bind (the small race with another binder is accepted), or as
    an endpoint that refuses connections.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
