"""Cron schedules: queues.yaml's ``schedules:`` turned into jobs, once per tick across replicas.

:class:`~producers.schedules.firer.ScheduleFirer` is what the scheduler role
(``conveyor scheduler``, :mod:`producers.scheduler`) calls each turn;
:mod:`producers.schedules.store` keeps schedule state and tick claims in the timer
table; :mod:`producers.schedules.listing` is what ``conveyor schedules ls`` shows;
:mod:`producers.schedules.metrics` their Prometheus counters. Tick math is
:mod:`infra.cron` (pure). The design: docs/scheduling.md.
"""

from producers.schedules.firer import (
    ScheduleError,
    ScheduleFirer,
    schedule_enqueuer,
    schedule_job_id,
    unknown_schedule,
)
from producers.schedules.store import ScheduleState, ScheduleStore, ScheduleStoreError

__all__ = [
    "ScheduleError",
    "ScheduleFirer",
    "ScheduleState",
    "ScheduleStore",
    "ScheduleStoreError",
    "schedule_enqueuer",
    "schedule_job_id",
    "unknown_schedule",
]
