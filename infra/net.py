"""Networking helpers for processes started on this machine: free ports, busy ports, a probe."""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit


def free_port() -> int:
    """A currently free loopback port.

    The port is free when this returns; whoever binds it a moment later may lose it
    to another process (a small race, acceptable for local processes and tests).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether binding ``host:port`` fails because something already listens there.

    Bound with SO_REUSEADDR, as uvicorn and the emulator bind, so a port whose last
    connections linger in TIME_WAIT counts as free, as it is for them.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """Whether something accepts a TCP connection at ``url``'s host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout_s):
            return True
    except OSError:
        return False
