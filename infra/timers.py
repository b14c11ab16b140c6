"""The timer store: delayed jobs waiting for their due time, in ``<project>-<environment>-timers``.

INTERFACE SKELETON (issue 15). The signatures below are the contract between the
delayed-jobs work (which implements this module), the cancellation work (which calls
:meth:`TimerStore.get` and :meth:`TimerStore.cancel`) and the cron work (which keeps
its schedule state and tick claims in the same table under ``pk`` values starting
with ``schedule#``). Keep the names and meanings; add what you need.

The table: partition key ``pk`` (S), sort key ``sk`` (S), time to live on
``expires_at`` (see :mod:`infra.aws.names`). Reserved ``pk`` prefixes:

- ``schedule#<name>``: cron schedule state and tick claims (owned by the cron code);
- everything else: owned by this module (due-time buckets, per-job items …).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

#: The ``pk`` prefix reserved for cron schedules (state and tick claims).
SCHEDULE_PK_PREFIX = "schedule#"

#: What :meth:`TimerStore.cancel` did: ``cancelled`` — the job was waiting and is now
#: removed, it will never be published; ``not_found`` — no waiting job has this id (it
#: may never have existed, or was already published: ask the ledger); ``publishing`` —
#: a scheduler has claimed it and is publishing it right now (too late to stop).
TimerCancel = Literal["cancelled", "not_found", "publishing"]


@dataclass(frozen=True)
class Timer:
    """A delayed job as stored: everything needed to publish it when it is due."""

    job_id: str
    job_type: str
    #: When it becomes due (timezone-aware, UTC).
    due_at: datetime
    #: The envelope to publish, already encoded (the same bytes a job published now gets).
    envelope_json: str
    #: The name of the API key that enqueued it (None: no authentication).
    key_name: str | None = None


class TimerStore:
    """Stores delayed jobs and hands due ones to exactly one scheduler replica."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def get(self, job_id: str) -> Timer | None:
        """The waiting job with this id, or None (never stored, published, or cancelled)."""
        raise NotImplementedError

    def cancel(self, job_id: str) -> TimerCancel:
        """Remove a waiting job so it is never published (a conditional delete)."""
        raise NotImplementedError
