"""The backlog of a pool: visible + in-flight messages of the queues it consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

from infra import aws
from infra.aws import lookup
from infra.aws.lookup import Depth, queue_depth
from infra.topology import Topology


@dataclass(frozen=True)
class Backlog:
    """Messages waiting (visible) and being worked on (in flight) across a pool's queues."""

    visible: int
    in_flight: int
    by_queue: dict[str, Depth] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """What the autoscaler divides by the target (delayed messages are not work yet)."""
        return self.visible + self.in_flight


class BacklogReader:
    """Reads pool backlogs from SQS's queue attributes (queue URLs looked up once)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._urls: dict[str, str] = {}

    def url(self, queue: str) -> str:
        """The queue's URL; MissingResourceError if it does not exist."""
        if queue not in self._urls:
            self._urls[queue] = lookup.queue_url(self.topology, queue)
        return self._urls[queue]

    def read(self, pool: str) -> Backlog:
        """The backlog of ``pool`` now (SQS's counts are approximate, about a second late)."""
        sqs = aws.client("sqs")
        depths = {q: queue_depth(sqs, self.url(q)) for q in self.topology.pools[pool].queues}
        return Backlog(
            visible=sum(d.visible for d in depths.values()),
            in_flight=sum(d.in_flight for d in depths.values()),
            by_queue=depths,
        )
