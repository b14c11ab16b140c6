"""When a schedule's ticks fall: cron expressions and fixed intervals (pure, no AWS).

A :class:`Recurrence` answers three questions in absolute time (timezone-aware UTC
datetimes, whole seconds): the next tick after a moment (:meth:`Recurrence.next_after`),
the ticks of a window (:meth:`Recurrence.ticks_between`) and the last few ticks of a
window (:meth:`Recurrence.last_ticks`, what a catch-up after an outage fires).

- :class:`Cron`: a 5-field cron expression (minute hour day-of-month month day-of-week,
  names such as ``mon`` and ``jan`` allowed, the day fields OR-ed as in Vixie cron when
  both are restricted) or an alias (``@hourly``, ``@daily``/``@midnight``, ``@weekly``,
  ``@monthly``, ``@yearly``/``@annually``), read in an IANA timezone. The matching is
  cronsim's (the library healthchecks.io uses), which follows Debian's cron; its
  extensions (``L`` and ``LW`` in day-of-month, ``L`` and ``#`` in day-of-week) work too.
- :class:`Every`: a fixed interval, counted from the Unix epoch in UTC, so every
  replica computes the same ticks without sharing a start time (``every: 5m`` fires at
  :00, :05, … of each hour; ``every: 1d`` at midnight UTC).

DST rule (cron only). A job at a fixed wall-clock time — both the minute and the hour
fields are fixed values, lists or ranges, not starting with ``*`` — keeps to the wall
clock, as Vixie/Debian cron does:

- a time that does not exist (spring forward: 02:30 in Europe/Berlin on the last Sunday
  of March) fires once, at the first minute that exists after it (03:00 local);
- a time that happens twice (fall back: 02:30 on the last Sunday of October) fires
  once, at its first occurrence (02:30 CEST, i.e. 00:30 UTC).

Any other expression (``*/15 * * * *``, ``0 * * * *``) runs in elapsed time: an hourly
job fires every real hour, so twice during a repeated hour and not at all in a skipped one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

#: ``@name`` shorthands and the 5-field expressions they stand for.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
#: Ticks :meth:`Recurrence.ticks_between` returns at most (a bound on the work of a turn).
MAX_TICKS = 10_000
#: How far back :meth:`Recurrence.last_ticks` looks at most.
MAX_LOOKBACK = timedelta(days=2 * 366)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CronError(ValueError):
    """An expression, interval or timezone that cannot make a schedule (a one-line message)."""


def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name`` (``UTC``, ``Europe/Berlin`` …), or :class:`CronError`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f"unknown timezone '{name}' (an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None


def normalize_cron(expression: str) -> str:
    """The 5-field form of ``expression`` (an alias expanded), or :class:`CronError` saying
    what is wrong. Checks the fields and that the expression fires at all."""
    text = " ".join(str(expression).split())
    if text.startswith("@"):
        expanded = ALIASES.get(text.lower())
        if expanded is None:
            raise CronError(f"unknown cron alias '{text}' (known: {', '.join(sorted(ALIASES))})")
        return expanded
    parts = text.split(" ") if text else []
    if len(parts) != 5:
        raise CronError(
            f"cron expression '{text}' has {len(parts)} fields, not 5"
            " (minute hour day-of-month month day-of-week)"
        )
    try:
        sim = CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        # cronsim says "Bad minute": name the field as written, in lower case.
        raise CronError(f"cron expression '{text}': {str(exc).lower()} field") from None
    try:
        next(sim)
    except StopIteration:
        raise CronError(f"cron expression '{text}' never fires") from None
    return text


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a naive datetime: pass a timezone-aware one")
    return moment.astimezone(UTC)


class Recurrence:
    """Ticks in absolute time; subclasses define :meth:`_iter_after`."""

    def _iter_after(self, after: datetime) -> Iterator[datetime]:
        """Ticks strictly after ``after`` (UTC), ascending."""
        raise NotImplementedError

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (a UTC datetime)."""
        return next(self._iter_after(_utc(after)))

    def ticks_between(
        self, after: datetime, until: datetime, *, limit: int = MAX_TICKS
    ) -> list[datetime]:
        """The ticks in ``(after, until]``, ascending, at most ``limit`` (the first ones)."""
        after, until = _utc(after), _utc(until)
        found: list[datetime] = []
        for tick in self._iter_after(after):
            if tick > until or len(found) >= limit:
                break
            found.append(tick)
        return found

    def last_ticks(self, after: datetime, until: datetime, count: int) -> list[datetime]:
        """The last ``count`` ticks in ``(after, until]``, ascending (bounded work: the window
        is widened from ``until`` backwards until it holds ``count`` ticks)."""
        after, until = _utc(after), _utc(until)
        after = max(after, until - MAX_LOOKBACK)
        if count <= 0 or after >= until:
            return []
        span = timedelta(hours=1)
        while True:
            start = max(after, until - span)
            found = self.ticks_between(start, until, limit=MAX_TICKS)
            if len(found) >= count or start == after or len(found) >= MAX_TICKS:
                return found[-count:]
            span *= 4


@dataclass(frozen=True)
class Cron(Recurrence):
    """A cron expression (5 fields or an alias) read in ``timezone``."""

    expression: str
    timezone: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "expression", normalize_cron(self.expression))
        object.__setattr__(self, "_zone", zone(self.timezone))

    def _iter_after(self, after: datetime) -> Iterator[datetime]:
        # cronsim iterates in local wall time for fixed-time jobs (see the module's DST
        # rule); a repeated hour can then yield a tick at or before `after` (its first
        # occurrence when `after` is in the second): such ticks are dropped, which is
        # also what makes a repeated 02:30 fire once only.
        last = after
        for local in CronSim(self.expression, after.astimezone(self._zone)):
            tick = local.astimezone(UTC)
            if tick > last:
                last = tick
                yield tick


@dataclass(frozen=True)
class Every(Recurrence):
    """Every ``interval_s`` seconds (a whole number, at least 1), from the Unix epoch."""

    interval_s: int

    def __post_init__(self) -> None:
        if self.interval_s < 1 or int(self.interval_s) != self.interval_s:
            raise CronError(f"every: {self.interval_s!r} is not a whole number of seconds >= 1")

    def _iter_after(self, after: datetime) -> Iterator[datetime]:
        elapsed_s = (after - _EPOCH).total_seconds()
        n = math.floor(elapsed_s / self.interval_s) + 1
        while True:
            yield _EPOCH + timedelta(seconds=n * self.interval_s)
            n += 1

    def last_ticks(self, after: datetime, until: datetime, count: int) -> list[datetime]:
        # Arithmetic, not a search: the last tick at or before `until`, then back.
        after, until = _utc(after), _utc(until)
        if count <= 0 or after >= until:
            return []
        n = math.floor((until - _EPOCH).total_seconds() / self.interval_s)
        ticks = [_EPOCH + timedelta(seconds=(n - i) * self.interval_s) for i in range(count)]
        return [t for t in reversed(ticks) if t > after]


def recurrence(*, cron: str | None, every_s: float | None, timezone: str = "UTC") -> Recurrence:
    """The :class:`Cron` or :class:`Every` of a schedule (exactly one of the two given)."""
    if (cron is None) == (every_s is None):
        raise CronError("set exactly one of cron and every")
    if cron is not None:
        return Cron(cron, timezone)
    assert every_s is not None
    if every_s != int(every_s):
        raise CronError(f"every: {every_s:g}s is not a whole number of seconds")
    return Every(int(every_s))


def jitter_offset_s(key: str, jitter_s: float) -> float:
    """A delay in ``[0, jitter_s)`` derived from ``key`` (schedule and tick), to the
    millisecond: every replica computes the same one, so they agree when a tick is due."""
    if jitter_s <= 0:
        return 0.0
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return math.floor(fraction * jitter_s * 1000) / 1000


def tick_id(tick: datetime) -> str:
    """A tick's stable name: its UTC time to the second, ``2026-03-29T01:00:00Z``."""
    return _utc(tick).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_tick_id(text: str) -> datetime:
    """The tick a :func:`tick_id` names."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
