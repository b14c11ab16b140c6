"""``dlq list``: every DLQ of the topology with its depth and the age of its oldest message.

SQS reports depths as queue attributes. The oldest message's age is a CloudWatch
metric on AWS (ApproximateAgeOfOldestMessage), which the embedded emulator does
not have; it is computed here from the SentTimestamp of the messages a
non-consuming peek sees instead, the same way everywhere. When the peek cannot
see every message (more than :data:`OLDEST_SCAN_LIMIT`, or some in flight), the
age is a lower bound and is reported as such.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from infra.aws.lookup import Depth, queue_depth, queue_url_or_none
from infra.topology import Topology
from ops.dlq.peek import DEFAULT_HOLD_S, peek
from ops.dlq.queues import DeadLetterQueue, resolve_dlq

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: Messages a list peeks at per DLQ to find the oldest one.
OLDEST_SCAN_LIMIT = 1_000
#: DLQs peeked at once.
SUMMARY_THREADS = 8


@dataclass(frozen=True)
class DlqSummary:
    """One row of ``dlq list``."""

    dlq: DeadLetterQueue
    exists: bool
    depth: Depth | None = None
    #: Seconds since the oldest seen message was sent to the DLQ (None: empty or unknown).
    oldest_age_s: float | None = None
    #: False when not every message could be seen: the true age may be greater.
    oldest_exact: bool = True

    def to_json(self) -> dict[str, Any]:
        """The row as ``dlq list --json`` prints it."""
        return {
            "queue": self.dlq.queue,
            "dlq": self.dlq.name,
            "source": self.dlq.source_name,
            "exists": self.exists,
            "depth": self.depth.total if self.depth else None,
            "visible": self.depth.visible if self.depth else None,
            "in_flight": self.depth.in_flight if self.depth else None,
            "oldest_age_s": round(self.oldest_age_s, 3) if self.oldest_age_s is not None else None,
            "oldest_age_exact": self.oldest_exact,
        }


def summarize(
    sqs: SQSClient,
    topology: Topology,
    *,
    hold_s: float = DEFAULT_HOLD_S,
    oldest_scan_limit: int = OLDEST_SCAN_LIMIT,
) -> list[DlqSummary]:
    """A summary of every declared queue's DLQ, in queues.yaml order.

    ``oldest_scan_limit``: messages peeked per DLQ for the oldest one (the console,
    which reads this on every page load, peeks fewer than the CLI).
    """
    queues = list(topology.queues)
    if len(queues) <= 1:
        return [_summary(sqs, topology, q, hold_s, oldest_scan_limit) for q in queues]
    # Each non-empty DLQ's peek ends with a 1 s long poll that finds nothing new: the
    # DLQs are read side by side, so the list takes about as long as its slowest DLQ.
    with ThreadPoolExecutor(max_workers=min(SUMMARY_THREADS, len(queues))) as pool:
        futures = [
            pool.submit(_summary, sqs, topology, q, hold_s, oldest_scan_limit) for q in queues
        ]
        return [future.result() for future in futures]


def _summary(
    sqs: SQSClient, topology: Topology, queue: str, hold_s: float, oldest_scan_limit: int
) -> DlqSummary:
    dlq = resolve_dlq(topology, queue)
    url = queue_url_or_none(sqs, dlq.name)
    if url is None:
        return DlqSummary(dlq, exists=False)
    depth = queue_depth(sqs, url)
    if depth.total == 0:
        return DlqSummary(dlq, exists=True, depth=depth)
    found = peek(
        sqs,
        url,
        limit=oldest_scan_limit,
        hold_s=hold_s,
        # A receive returns at most 10 messages; a few more cover short pages.
        max_receives=oldest_scan_limit // 10 + 5,
    )
    sent = [s for job in found.jobs if (s := job.sent_at) is not None]
    age = max(0.0, (datetime.now(UTC) - min(sent)).total_seconds()) if sent else None
    exact = not found.limited and not found.sampled and not found.partial and depth.in_flight == 0
    return DlqSummary(dlq, exists=True, depth=depth, oldest_age_s=age, oldest_exact=exact)
