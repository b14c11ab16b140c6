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
    """When each queue's receive loop last completed a turn; the node is as alive as its stalest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last: dict[str, float] = {}

    def mark(self, queue: str = "") -> None:
        """``queue``'s receive loop completed a turn."""
        with self._lock:
            self._last[queue] = time.monotonic()

    def age_s(self) -> float:
        """Seconds since the stalest loop's last turn (since start, before the first turn)."""
        with self._lock:
            oldest = min(self._last.values(), default=self._started)
        return time.monotonic() - oldest


#: This process's receive loops (one consumer per node, one loop per queue).
LIVENESS = Liveness()
