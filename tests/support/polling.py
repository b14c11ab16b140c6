"""Waiting in tests: poll a condition until a deadline, never sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

#: Long enough for a slow CI machine; a passing test never waits it out.
DEADLINE_S = 60.0
#: How often a probe runs: short, so a test goes on as soon as the condition holds.
INTERVAL_S = 0.1


def eventually(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout_s: float = DEADLINE_S,
    interval_s: float = INTERVAL_S,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)  # polling interval, bounded by the deadline
