"""``conveyor status``: per queue its depth, DLQ depth and oldest message; per pool its replicas.

Where the age of the oldest message comes from:

* a queue: CloudWatch's ``ApproximateAgeOfOldestMessage`` (AWS publishes it once a
  minute). It is never computed by peeking: receiving a message from a live queue
  counts as a delivery (``ApproximateReceiveCount`` is the job's attempt number)
  and hides it from the workers. The emulator has no SQS metrics, so there it is
  unknown.
* a DLQ: the non-consuming peek of ``conveyor dlq list``
  (:func:`ops.dlq.summary.summarize`), as a DLQ's receive counts do not matter.
  It is refreshed at most every :data:`DLQ_AGE_EVERY_S` under ``--watch``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from infra import aws
from infra.aws.errors import aws_errors
from infra.aws.lookup import Depth, queue_depth, queue_url_or_none
from infra.errors import AwsError
from infra.topology import Topology
from ops.dlq.summary import OLDEST_SCAN_LIMIT, DlqSummary, summarize
from ops.scaling.backends import Backend
from ops.scaling.errors import ScalingError
from ops.scaling.model import PoolState

#: Under ``--watch``, DLQs are peeked for their oldest message at most this often.
DLQ_AGE_EVERY_S = 30.0
#: How far back CloudWatch is asked for the oldest-message metric (it is per minute).
METRIC_LOOKBACK_S = 600


@dataclass(frozen=True)
class QueueStatus:
    """One queue of the topology and its DLQ."""

    queue: str
    name: str
    pool: str | None
    exists: bool
    depth: Depth | None = None
    dlq_depth: int | None = None
    #: Seconds, or None when it cannot be known (see the module docstring).
    oldest_age_s: float | None = None
    dlq_oldest_age_s: float | None = None
    #: False when the DLQ peek could not see every message: the age is a lower bound.
    dlq_oldest_exact: bool = True

    def to_json(self) -> dict[str, Any]:
        """The row as ``status --json`` prints it."""
        depth = self.depth
        return {
            "queue": self.queue,
            "name": self.name,
            "pool": self.pool,
            "exists": self.exists,
            "visible": depth.visible if depth else None,
            "in_flight": depth.in_flight if depth else None,
            "delayed": depth.delayed if depth else None,
            "dlq_depth": self.dlq_depth,
            "oldest_age_s": _round(self.oldest_age_s),
            "dlq_oldest_age_s": _round(self.dlq_oldest_age_s),
            "dlq_oldest_age_exact": self.dlq_oldest_exact,
        }


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


@dataclass(frozen=True)
class SystemStatus:
    """What ``conveyor status`` shows at one moment."""

    at: float
    queues: list[QueueStatus]
    backend: str
    pools: list[PoolState]
    #: Set when the pools could not be read (the queues still are).
    pools_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The document ``status --json`` prints."""
        return {
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "queues": [q.to_json() for q in self.queues],
            "backend": self.backend,
            "pools": [p.to_json(self.at) for p in self.pools],
            "pools_error": self.pools_error,
        }


@dataclass
class StatusReader:
    """Reads the status repeatedly (``--watch``), caching what is expensive to learn."""

    topology: Topology
    backend: Backend | None
    backend_name: str
    clock: Any = time.monotonic
    #: Messages peeked per DLQ for its oldest one (the console peeks fewer).
    dlq_scan_limit: int = OLDEST_SCAN_LIMIT
    _dlq_rows: dict[str, DlqSummary] = field(default_factory=dict)
    _dlq_read_at: float | None = None
    _cloudwatch_ok: bool = True

    def read(self) -> SystemStatus:
        """The status now."""
        sqs = aws.client("sqs")
        now = self.clock()
        if self._dlq_read_at is None or now - self._dlq_read_at >= DLQ_AGE_EVERY_S:
            rows_now = summarize(sqs, self.topology, oldest_scan_limit=self.dlq_scan_limit)
            self._dlq_rows = {row.dlq.queue: row for row in rows_now}
            self._dlq_read_at = now
        rows = []
        for queue in self.topology.queues:
            name = self.topology.queue_name(queue)
            pool = self.topology.pool_of_queue(queue)
            url = queue_url_or_none(sqs, name)
            if url is None:
                rows.append(QueueStatus(queue, name, pool, exists=False))
                continue
            dlq_url = queue_url_or_none(sqs, self.topology.dlq_name(queue))
            dlq_depth = queue_depth(sqs, dlq_url).total if dlq_url else None
            dlq_row = self._dlq_rows.get(queue)
            rows.append(
                QueueStatus(
                    queue,
                    name,
                    pool,
                    exists=True,
                    depth=queue_depth(sqs, url),
                    dlq_depth=dlq_depth,
                    oldest_age_s=self._oldest_age_s(name),
                    dlq_oldest_age_s=dlq_row.oldest_age_s if dlq_depth and dlq_row else None,
                    dlq_oldest_exact=dlq_row.oldest_exact if dlq_row else True,
                )
            )
        pools: list[PoolState] = []
        error = None
        if self.backend is not None:
            try:
                pools = list(self.backend.pools().values())
            except ScalingError as exc:
                error = exc.message
        return SystemStatus(time.time(), rows, self.backend_name, pools, error)

    def _oldest_age_s(self, queue_name: str) -> float | None:
        if not self._cloudwatch_ok:
            return None
        end = datetime.now(UTC)
        try:
            with aws_errors(f"reading the oldest-message age of {queue_name}"):
                answer = aws.client("cloudwatch").get_metric_statistics(
                    Namespace="AWS/SQS",
                    MetricName="ApproximateAgeOfOldestMessage",
                    Dimensions=[{"Name": "QueueName", "Value": queue_name}],
                    StartTime=end - timedelta(seconds=METRIC_LOOKBACK_S),
                    EndTime=end,
                    Period=60,
                    Statistics=["Maximum"],
                )
        except AwsError:
            # No CloudWatch access (IAM, endpoint): the age stays unknown; ask no more.
            self._cloudwatch_ok = False
            return None
        points = sorted(answer.get("Datapoints", []), key=lambda p: p["Timestamp"])
        return float(points[-1]["Maximum"]) if points else None
