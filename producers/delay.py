"""When a delayed job is due: ``delay_s`` or ``not_before``, within ``scheduling.max_delay_s``.

Shared by ``POST /v1/jobs`` (fields of each job) and ``POST /v1/jobs/{type}`` (query
parameters ``delay_s`` and ``not_before``). Every problem is one readable line that
the API answers with 422.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from infra.durations import format_duration_s

__all__ = ["DelayError", "due_time"]


class DelayError(ValueError):
    """The requested delay cannot be honoured; ``str()`` says why (a 422)."""


def _ceil_ms(at: datetime) -> datetime:
    """``at`` rounded up to the millisecond (the timer table's precision): never early."""
    extra_us = at.microsecond % 1000
    return at + timedelta(microseconds=1000 - extra_us) if extra_us else at


def due_time(
    delay_s: float | None,
    not_before: datetime | None,
    *,
    now: datetime,
    max_delay_s: float,
) -> datetime | None:
    """When to publish the job: None for now (no delay asked, ``delay_s`` 0, or a
    ``not_before`` that has passed), else a UTC time in the future.

    Raises :class:`DelayError` for both at once, a negative or non-finite delay, a
    ``not_before`` without a UTC offset, or a due time beyond ``max_delay_s`` from now.
    """
    if delay_s is None and not_before is None:
        return None
    if delay_s is not None and not_before is not None:
        raise DelayError("give delay_s or not_before, not both")
    limit = f"{max_delay_s:g} s ({format_duration_s(max_delay_s)}; scheduling.max_delay_s)"
    if delay_s is not None:
        if not math.isfinite(delay_s) or delay_s < 0:
            raise DelayError(f"delay_s must be a number of seconds from 0 to {limit}")
        if delay_s > max_delay_s:
            raise DelayError(f"delay_s {delay_s:g} is above the limit of {limit}")
        due = now + timedelta(seconds=delay_s)
    else:
        assert not_before is not None
        if not_before.tzinfo is None or not_before.utcoffset() is None:
            raise DelayError(
                "not_before needs a UTC offset (RFC 3339, e.g. 2026-12-06T12:00:00Z"
                " or 2026-12-06T13:00:00+01:00)"
            )
        due = not_before.astimezone(UTC)
        if (due - now).total_seconds() > max_delay_s:
            raise DelayError(
                f"not_before {due.isoformat()} is further away than the limit of {limit}"
            )
    if due <= now:
        return None
    return _ceil_ms(due.astimezone(UTC))
