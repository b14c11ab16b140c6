"""Loopback networking helpers for processes started on this machine."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A currently free loopback port.

    The port is free when this returns; whoever binds it a moment later may lose it
    to another process (a small race, acceptable for local processes and tests).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
