"""Liveness: is this node's receive loop still completing polls?

A consumer can stop silently (a wedged connection, a loop that died). The
transport marks every completed poll — and every turn where it chose not to poll
because all its slots are busy — and a watchdog thread in the node checks that the
last mark is recent. When it is not, the node reports unhealthy and exits non-zero,
so its supervisor (``conveyor up``, ECS, Kubernetes) starts a fresh one.
"""

from __future__ import annotations

import threading
import time


class Liveness:
    """The time of the receive loop's last completed turn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = time.monotonic()

    def mark(self) -> None:
        """The receive loop completed a turn."""
        with self._lock:
            self._last = time.monotonic()

    def age_s(self) -> float:
        """Seconds since the last completed turn."""
        with self._lock:
            return time.monotonic() - self._last


#: This process's receive loop (one consumer per node).
LIVENESS = Liveness()
