"""Choosing jobs in a DLQ: by type, error text, failure time and id.

Pure functions of a :class:`~ops.dlq.jobs.DeadJob`, shared by show, redrive,
export and delete, so every command selects exactly the same jobs for the same
options.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from infra.durations import parse_duration_s
from ops.dlq.jobs import DeadJob, parse_time


def parse_since(value: str, now: datetime) -> datetime:
    """The instant ``--since`` means: ``now`` minus a duration (``90s``, ``2h``, ``3d``),
    or an ISO 8601 time (``2026-11-23T10:00:00Z``; UTC when no offset is given).

    Raises ValueError with a message fit for the user.
    """
    try:
        return now - timedelta(seconds=parse_duration_s(value))
    except ValueError as duration_error:
        parsed = parse_time(value.strip().replace("Z", "+00:00"))
        if parsed is None:
            raise ValueError(
                f"invalid --since {value!r}: expected a duration such as 30m, 2h or 3d,"
                " or an ISO 8601 time such as 2026-11-23T10:00:00Z"
            ) from duration_error
        return parsed


def parse_rate(value: str) -> float:
    """Messages per second from ``--rate``: ``5``, ``5/s``, ``0.5/s`` or ``300/m``."""
    text = value.strip().lower()
    per_s = 1.0
    for suffix, seconds in (("/s", 1.0), ("/m", 60.0), ("/min", 60.0)):
        if text.endswith(suffix):
            text, per_s = text[: -len(suffix)], seconds
            break
    try:
        rate = float(text) / per_s
    except ValueError:
        rate = -1.0
    if not rate > 0 or rate == float("inf"):
        raise ValueError(
            f"invalid --rate {value!r}: expected a positive number such as 5/s or 300/m"
        )
    return rate


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a command acts on; an empty filter matches every job."""

    #: Job types or shell-style patterns (``image.*``); any may match.
    job_types: tuple[str, ...] = ()
    #: Case-insensitive text found in the reason, error type or error message.
    error: str | None = None
    #: Only jobs that failed at or after this instant.
    since: datetime | None = None
    #: Job ids or SQS message ids; any may match.
    ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_empty(self) -> bool:
        """Whether the filter selects everything."""
        return not (self.job_types or self.error or self.since or self.ids)

    def matches(self, job: DeadJob) -> bool:
        """Whether ``job`` is selected (every given criterion must hold)."""
        return (
            self._type_matches(job)
            and self._error_matches(job)
            and self._time_matches(job)
            and (not self.ids or any(job.has_id(i) for i in self.ids))
        )

    def _type_matches(self, job: DeadJob) -> bool:
        if not self.job_types:
            return True
        job_type = job.job_type
        return job_type is not None and any(
            fnmatch.fnmatchcase(job_type, p) for p in self.job_types
        )

    def _error_matches(self, job: DeadJob) -> bool:
        if not self.error:
            return True
        return self.error.casefold() in f"{job.reason}\n{job.error}".casefold()

    def _time_matches(self, job: DeadJob) -> bool:
        if self.since is None:
            return True
        failed_at = job.failed_at
        # A job whose failure time is unknown cannot be shown to be recent enough.
        return failed_at is not None and failed_at >= self.since

    def describe(self) -> str:
        """The criteria in words, for messages (``"" `` when empty)."""
        parts: list[str] = []
        if self.job_types:
            parts.append(f"type {' or '.join(self.job_types)}")
        if self.error:
            parts.append(f"error containing {self.error!r}")
        if self.since is not None:
            parts.append(f"failed since {self.since.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z")
        if self.ids:
            parts.append(f"{len(self.ids)} id(s)")
        return ", ".join(parts)
