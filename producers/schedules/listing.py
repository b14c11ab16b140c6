"""What ``conveyor schedules ls`` shows: each schedule's timetable, state, next and last fire.

The last job's status comes from the job ledger when the job type records it
(``ledger: true``); the ledger being unreachable makes that one field ``unknown``,
never the whole listing fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from infra.cron import jitter_offset_s, tick_id, zone
from infra.durations import format_duration_s
from infra.ledger import Ledger, LedgerUnavailableError
from infra.topology import Schedule, Topology
from producers.schedules.store import ScheduleState, ScheduleStore

ScheduleMode = Literal["active", "paused", "disabled"]


@dataclass(frozen=True)
class ScheduleView:
    """One schedule as listed (times are timezone-aware, in the schedule's timezone)."""

    name: str
    #: The cron expression (aliases expanded) or ``every 5m``.
    timetable: str
    timezone: str
    job_type: str
    mode: ScheduleMode
    misfire: str
    next_fire: datetime | None
    last_fire: datetime | None
    last_job_id: str | None
    #: ``tick`` or ``trigger``.
    last_kind: str | None
    #: The last job's overall state from the ledger; None when its type records none.
    last_status: str | None

    @property
    def paused(self) -> bool:
        """Paused at run time (``conveyor schedules pause``)."""
        return self.mode == "paused"

    def to_json(self) -> dict[str, Any]:
        """The view as JSON-ready values (ISO 8601 times)."""
        return {
            "name": self.name,
            "timetable": self.timetable,
            "timezone": self.timezone,
            "job_type": self.job_type,
            "state": self.mode,
            "paused": self.paused,
            "misfire": self.misfire,
            "next_fire": self.next_fire.isoformat() if self.next_fire else None,
            "last_fire": self.last_fire.isoformat() if self.last_fire else None,
            "last_job_id": self.last_job_id,
            "last_kind": self.last_kind,
            "last_status": self.last_status,
        }


def timetable(schedule: Schedule) -> str:
    """``30 2 * * *`` or ``every 5m``."""
    if schedule.cron is not None:
        return schedule.cron
    return f"every {format_duration_s(schedule.every or 0)}"


def _last_status(ledger: Ledger | None, job_type: str, job_id: str | None) -> str | None:
    if ledger is None or job_id is None or not ledger.records(job_type):
        return None
    try:
        record = ledger.get(job_id)
    except LedgerUnavailableError:
        return "unknown"
    return record.state if record is not None else "unknown"


def _view(
    name: str, schedule: Schedule, state: ScheduleState, ledger: Ledger | None, now: datetime
) -> ScheduleView:
    # `every` schedules are in UTC (queues.yaml allows no other timezone for them).
    tz = zone(schedule.timezone)
    mode: ScheduleMode = (
        "disabled" if not schedule.enabled else "paused" if state.paused else "active"
    )
    next_fire = None
    if mode == "active":
        tick = schedule.recurrence().next_after(now)
        offset_s = jitter_offset_s(f"{name}/{tick_id(tick)}", schedule.jitter_s)
        next_fire = tick + timedelta(seconds=offset_s)

    def shown(at: datetime | None) -> datetime | None:
        return at.astimezone(tz) if at is not None else None

    return ScheduleView(
        name=name,
        timetable=timetable(schedule),
        timezone=schedule.timezone,
        job_type=schedule.job_type,
        mode=mode,
        misfire=schedule.misfire
        if schedule.misfire == "skip"
        else f"catch_up (up to {schedule.catch_up_count})",
        next_fire=shown(next_fire),
        last_fire=shown(state.last_fired_at),
        last_job_id=state.last_job_id,
        last_kind=state.last_kind,
        last_status=_last_status(ledger, schedule.job_type, state.last_job_id),
    )


def describe_schedules(
    topology: Topology, store: ScheduleStore, ledger: Ledger | None, now: datetime
) -> list[ScheduleView]:
    """Every schedule of ``topology``, by name (one BatchGetItem per 100 schedules, one
    ledger read per schedule that fired a recorded job type)."""
    states = store.states(topology.schedules)
    return [
        _view(name, topology.schedules[name], states[name], ledger, now)
        for name in sorted(topology.schedules)
    ]
