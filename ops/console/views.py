"""What each page shows, read with the same functions (and JSON documents) as the CLI.

Each JSON twin is the CLI's ``--json`` document, plus what only the page has:

=======================  ===========================================================
page                     document
=======================  ===========================================================
``/``                    ``conveyor status --json`` + ``attention``, ``last_hour``
``/dead-letters``        ``conveyor dlq list --json``
``/dead-letters/{q}``    ``conveyor dlq show Q --json --limit 100`` + ``groups``,
                         ``sample``
``/pools``               ``conveyor workers ls --json`` + ``recommendations`` (the
                         autoscaler's policy now) and ``decisions`` (its recent ones)
``/jobs/{id}``           the API's ``GET /v1/jobs/{id}`` (``conveyor jobs show --json``)
``/schedules``           ``conveyor schedules ls --json``
=======================  ===========================================================

AWS requests of a DLQ page load: one GetQueueUrl, one
GetQueueAttributes, at most :data:`SAMPLE_RECEIVES` ReceiveMessage calls (10
messages each, so at most :data:`SAMPLE_SIZE` jobs shown) and one
ChangeMessageVisibilityBatch per 10 messages read to release them at once. A DLQ of
10,000 messages is sampled, never scanned, and the page says so.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra import aws
from infra.ledger import JobRecord, ledger_for
from infra.topology import Topology
from ops.console.sampler import Sampler
from ops.dlq import DeadJob, DeadLetterQueue, JobFilter, Peek, dlq_url, peek, resolve_dlq
from ops.dlq.render import show_document
from ops.dlq.summary import summarize
from ops.scaling.model import PoolState
from ops.scaling.status import SystemStatus

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: Jobs a DLQ page shows at most, and the ReceiveMessage calls it may make for them.
SAMPLE_SIZE = 100
SAMPLE_RECEIVES = SAMPLE_SIZE // 10 + 2
#: Messages the DLQ list (and the overview) peeks per DLQ for the oldest one.
LIST_SCAN_LIMIT = 100
#: Finding one job by id reads at most this many ReceiveMessage calls (1,000 messages).
FIND_RECEIVES = 100
#: A console read hides the messages it reads this long at most (released at once when
#: the read ends; this only matters if the console dies mid-read).
HOLD_S = 10.0
#: Connect and read timeouts of the console's SQS client: a receive long-polls 1 s.
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
#: Attention thresholds.
OLD_BACKLOG_S = 300.0


def sqs_client() -> SQSClient:
    """The console's SQS client: short timeouts, so a dead endpoint fails fast."""
    return aws.client("sqs", connect_timeout_s=CONNECT_TIMEOUT_S, read_timeout_s=READ_TIMEOUT_S)


# -- dead letters -------------------------------------------------------------------------


def dead_letters(topology: Topology) -> dict[str, Any]:
    """``dlq list --json`` (the oldest age from a peek of at most LIST_SCAN_LIMIT messages)."""
    rows = summarize(sqs_client(), topology, hold_s=HOLD_S, oldest_scan_limit=LIST_SCAN_LIMIT)
    return {"dlqs": [row.to_json() for row in rows]}


@dataclass(frozen=True)
class DlqPage:
    """A DLQ's sampled jobs and what the sample is."""

    dlq: DeadLetterQueue
    found: Peek
    job_filter: JobFilter

    def groups(self) -> list[dict[str, Any]]:
        """The sampled jobs grouped by reason, type and error type, largest group first."""
        counts = Counter(_group_key(job) for job in self.found.jobs)
        return [
            {"reason": reason, "type": job_type, "error_type": error, "count": n}
            for (reason, job_type, error), n in counts.most_common()
        ]

    def sample_note(self) -> str:
        """What the sample is, in words (the page shows it)."""
        f = self.found
        shown = len(f.jobs)
        what = f" matching {self.job_filter.describe()}" if not self.job_filter.is_empty else ""
        if f.limited or f.sampled:
            return (
                f"a sample: {shown} jobs{what} from the {f.scanned} messages read of"
                f" ~{f.depth} (at most {SAMPLE_SIZE} shown, {f.receives} ReceiveMessage"
                f" calls of at most {SAMPLE_RECEIVES}; the queue is never scanned whole on a"
                " page load)"
            )
        return (
            f"all {shown} jobs{what} of the {f.scanned} messages in the DLQ (~{f.depth};"
            f" {f.receives} ReceiveMessage calls)"
        )

    def to_json(self) -> dict[str, Any]:
        """``dlq show --json --limit SAMPLE_SIZE`` + the groups and the sample's bounds."""
        return {
            **show_document(self.dlq, self.found),
            "sampled": self.found.sampled or self.found.limited,
            "sample_size": SAMPLE_SIZE,
            "receives": self.found.receives,
            "max_receives": SAMPLE_RECEIVES,
            "groups": self.groups(),
        }


def _group_key(job: DeadJob) -> tuple[str, str, str]:
    error = job.failure.error_type if job.failure else "-"
    return job.reason, job.job_type or "?", error


def dlq_page(topology: Topology, queue: str, job_filter: JobFilter) -> DlqPage:
    """A bounded sample of ``queue``'s DLQ (see the module docstring for its requests)."""
    dlq = resolve_dlq(topology, queue)
    found = peek(
        sqs_client(),
        dlq_url(topology, dlq),
        job_filter,
        limit=SAMPLE_SIZE,
        hold_s=HOLD_S,
        max_receives=SAMPLE_RECEIVES,
    )
    return DlqPage(dlq, found, job_filter)


def find_jobs(
    topology: Topology, queue: str, job_filter: JobFilter, limit: int | None = None
) -> tuple[DeadLetterQueue, Peek]:
    """The jobs ``job_filter`` selects (ids, or a filter), reading at most FIND_RECEIVES."""
    dlq = resolve_dlq(topology, queue)
    found = peek(
        sqs_client(),
        dlq_url(topology, dlq),
        job_filter,
        limit=limit,
        hold_s=HOLD_S,
        max_receives=FIND_RECEIVES,
    )
    return dlq, found


# -- jobs ---------------------------------------------------------------------------------


def job_record(topology: Topology, job_id: str) -> JobRecord | None:
    """The ledger's record of ``job_id`` (None: unknown, or no job type records status)."""
    ledger = ledger_for(topology)
    return ledger.get(job_id) if ledger is not None else None


def timeline(record: JobRecord) -> dict[str, list[dict[str, Any]]]:
    """Per queue, the ledger's times in order: queued → started → retrying → finished."""
    out: dict[str, list[dict[str, Any]]] = {}
    for queue, status in record.queues.items():
        steps: list[dict[str, Any]] = []
        if record.queued_at is not None:
            steps.append({"at": record.queued_at, "state": "queued", "detail": ""})
        if status.started_at is not None:
            steps.append(
                {"at": status.started_at, "state": "running", "detail": f"attempt {status.attempt}"}
            )
        if status.state == "retrying":
            steps.append(
                {
                    "at": status.updated_at,
                    "state": "retrying",
                    "detail": f"next attempt at {status.next_attempt_at or '?'};"
                    f" {status.error or ''}",
                }
            )
        if status.state in ("succeeded", "dead-lettered", "cancelled"):
            detail = ", ".join(x for x in (status.reason, status.error) if x)
            steps.append(
                {
                    "at": status.finished_at or status.updated_at,
                    "state": status.state,
                    "detail": detail,
                }
            )
        elif status.state in ("running", "queued", "scheduled") and not steps:
            steps.append({"at": status.updated_at, "state": status.state, "detail": ""})
        if status.redrives:
            steps.append({"at": None, "state": "", "detail": f"redriven {status.redrives} times"})
        out[queue] = steps
    return out


# -- overview -----------------------------------------------------------------------------


def attention(
    topology: Topology, status: SystemStatus | None, sampler: Sampler
) -> list[dict[str, str]]:
    """What needs a person first: a growing DLQ, an old backlog, a pool at its maximum."""
    items: list[dict[str, str]] = []
    for queue in topology.queues:
        change = sampler.change(queue)
        minutes = max(1, round(sampler.span_s(queue) / 60))
        if change is not None:
            before, after = change
            if (after.dlq or 0) > (before.dlq or 0):
                items.append(
                    {
                        "level": "bad",
                        "kind": "dlq_growing",
                        "subject": queue,
                        "text": f"the DLQ of {queue} grew from {before.dlq or 0} to {after.dlq}"
                        f" in the last {minutes} min",
                    }
                )
            if before.backlog and after.depth and after.depth.visible >= before.backlog > 0:
                items.append(
                    {
                        "level": "warn",
                        "kind": "backlog_not_shrinking",
                        "subject": queue,
                        "text": f"{queue}'s backlog has not shrunk in {minutes} min"
                        f" ({after.depth.visible} visible)",
                    }
                )
    for row in status.queues if status else []:
        if row.oldest_age_s is not None and row.oldest_age_s >= OLD_BACKLOG_S:
            items.append(
                {
                    "level": "warn",
                    "kind": "old_backlog",
                    "subject": row.queue,
                    "text": f"{row.queue}'s oldest message is"
                    f" {int(row.oldest_age_s // 60)} min old",
                }
            )
        if row.dlq_depth and not any(
            i["subject"] == row.queue and i["kind"] == "dlq_growing" for i in items
        ):
            items.append(
                {
                    "level": "info",
                    "kind": "dlq_not_empty",
                    "subject": row.queue,
                    "text": f"the DLQ of {row.queue} holds {row.dlq_depth} jobs",
                }
            )
    visible = {
        row.queue: row.depth.visible for row in (status.queues if status else []) if row.depth
    }
    for pool in status.pools if status else []:
        declared = topology.pools.get(pool.pool)
        if declared is None:
            continue
        waiting = sum(visible.get(q, 0) for q in declared.queues)
        if pool.desired >= declared.replicas.max and waiting:
            items.append(
                {
                    "level": "warn",
                    "kind": "pool_at_max",
                    "subject": pool.pool,
                    "text": f"pool {pool.pool} is at its maximum ({pool.desired} nodes) with"
                    f" {waiting} jobs waiting",
                }
            )
    order = {"bad": 0, "warn": 1, "info": 2}
    return sorted(items, key=lambda i: order[i["level"]])


def pools_document(backend_name: str, states: list[PoolState]) -> dict[str, Any]:
    """``workers ls --json``."""
    now = time.time()
    return {"backend": backend_name, "pools": [s.to_json(now) for s in states]}
