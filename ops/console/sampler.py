"""An hour of queue depths and job counts, sampled by the console itself, in memory.

Where the overview's numbers come from (the page says so too):

- **depths** (visible, in flight, delayed, DLQ): SQS's queue attributes, read every
  ``sample_interval_s`` by this sampler (two GetQueueAttributes per queue);
- **succeeded / failed / dead-lettered in the last hour**: the worker nodes' own
  counters (``conveyor_jobs_*_total`` on each node's /metrics, per queue), scraped by
  the sampler; the count is the sum of their increases between samples. Only the
  ``local`` backend's nodes are reachable this way (the supervisor's status file names
  their ports); elsewhere the counts are unknown, and the page says so rather than
  show zeros. The ledger cannot answer "how many in the last hour" (it is keyed by job
  id, with no time index), and a DLQ peek would only see what is still there.

The window starts when the console started: for the first hour it covers less, and
the page shows how much. Nothing is persisted; a restart starts again.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from infra.aws.lookup import Depth, queue_depth, queue_url_or_none
from infra.logs import get_logger
from infra.topology import Topology
from ops.console.bounded import describe
from ops.scaling.backends.local import JOB_COUNTERS, metrics_urls, scrape_job_counts_by_queue

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = get_logger("conveyor.console")

#: How much history is kept (and what "last hour" means).
WINDOW_S = 3600.0
#: The attention items compare the newest sample with the one this long before.
RECENT_S = 300.0

#: Outcome names on the page, by node counter family.
OUTCOMES = {
    "conveyor_jobs_succeeded": "succeeded",
    "conveyor_jobs_failed": "failed",
    "conveyor_jobs_dead_lettered": "dead_lettered",
}

Counters = dict[str, dict[str, dict[str, int]]]  # node id -> queue -> family -> count


@dataclass(frozen=True)
class QueueSample:
    """One queue's depths at one sample (None: the queue or its DLQ does not exist)."""

    depth: Depth | None
    dlq: int | None

    @property
    def backlog(self) -> int:
        """Visible + in flight (what the autoscaler follows)."""
        return self.depth.visible + self.depth.in_flight if self.depth else 0


@dataclass(frozen=True)
class Sample:
    """Everything read at one time."""

    at: float
    queues: dict[str, QueueSample]
    #: Node counters; None when no node's /metrics could be read.
    counters: Counters | None = None


@dataclass
class LastHour:
    """Per queue, job outcomes over ``window_s`` (what the sampler could see)."""

    window_s: float
    by_queue: dict[str, dict[str, int]] = field(default_factory=dict)
    #: False: no node counters were readable (non-local backend, or no node running).
    known: bool = False


class Sampler:
    """Samples depths and node counters every ``interval_s`` into a one-hour ring."""

    def __init__(
        self,
        topology: Topology,
        sqs: Callable[[], SQSClient],
        *,
        interval_s: float,
        state_dir: Path | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``state_dir``: the local supervisor's (node counters); None for other backends."""
        self.topology = topology
        self._sqs = sqs
        self.interval_s = interval_s
        self.state_dir = state_dir
        self._clock = clock
        self._samples: deque[Sample] = deque(maxlen=int(WINDOW_S / interval_s) + 2)
        self._lock = threading.Lock()
        self._urls: dict[str, str] = {}
        #: The last sample's failure, if it failed (shown on the overview).
        self.last_error: str | None = None
        self.started_at = clock()

    # -- reading ------------------------------------------------------------------------

    def _url(self, sqs: SQSClient, name: str) -> str | None:
        if name not in self._urls:
            url = queue_url_or_none(sqs, name)
            if url is None:
                return None
            self._urls[name] = url
        return self._urls[name]

    def _depth(self, sqs: SQSClient, name: str) -> Depth | None:
        url = self._url(sqs, name)
        return queue_depth(sqs, url) if url else None

    def sample_once(self) -> Sample | None:
        """Read and keep one sample; None (and :attr:`last_error`) if SQS failed."""
        try:
            sqs = self._sqs()
            queues = {}
            for queue in self.topology.queues:
                dlq = self._depth(sqs, self.topology.dlq_name(queue))
                queues[queue] = QueueSample(
                    self._depth(sqs, self.topology.queue_name(queue)),
                    dlq.total if dlq is not None else None,
                )
        except Exception as exc:  # noqa: BLE001 - the sampler must keep running
            self.last_error = describe(exc)
            log.warning("console.sample_failed", error=self.last_error)
            return None
        self.last_error = None
        sample = Sample(self._clock(), queues, self._counters())
        with self._lock:
            self._samples.append(sample)
        return sample

    def _counters(self) -> Counters | None:
        if self.state_dir is None:
            return None
        found: Counters = {}
        for node, url in metrics_urls(self.state_dir).items():
            counts = scrape_job_counts_by_queue(url)
            if counts is not None:
                found[node] = counts
        return found or None

    def run(self, stop: threading.Event) -> None:
        """Sample every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            self.sample_once()
            stop.wait(self.interval_s)

    # -- what the pages show -----------------------------------------------------------

    def samples(self) -> list[Sample]:
        """The samples of the last hour, oldest first."""
        now = self._clock()
        with self._lock:
            return [s for s in self._samples if now - s.at <= WINDOW_S]

    def series(self, queue: str) -> list[tuple[float, int, int]]:
        """``(at, backlog, dlq depth)`` of ``queue`` over the last hour."""
        return [
            (s.at, q.backlog, q.dlq or 0)
            for s in self.samples()
            if (q := s.queues.get(queue)) is not None
        ]

    def last_hour(self) -> LastHour:
        """Job outcomes per queue: the sum of every node counter's increases."""
        samples = self.samples()
        window = samples[-1].at - samples[0].at if len(samples) > 1 else 0.0
        result = LastHour(window_s=window)
        totals: dict[str, dict[str, int]] = {
            q: dict.fromkeys(OUTCOMES.values(), 0) for q in self.topology.queues
        }
        for before, after in itertools.pairwise(samples):
            if after.counters is None:
                continue
            result.known = True
            for node, queues in after.counters.items():
                previous = (before.counters or {}).get(node)
                for queue, counts in queues.items():
                    if queue not in totals:
                        continue
                    for family in JOB_COUNTERS:
                        now_n = counts.get(family, 0)
                        was = (previous or {}).get(queue, {}).get(family, 0)
                        # A counter lower than before: the node restarted (a new process
                        # under the same id) and counts from zero again.
                        totals[queue][OUTCOMES[family]] += now_n - was if now_n >= was else now_n
        result.by_queue = totals
        return result

    def change(
        self, queue: str, recent_s: float = RECENT_S
    ) -> tuple[QueueSample, QueueSample] | None:
        """``queue``'s oldest sample of the last ``recent_s`` and its newest (None: fewer
        than two samples yet)."""
        samples = [s for s in self.samples() if queue in s.queues]
        if len(samples) < 2:
            return None
        newest = samples[-1]
        oldest = next(s for s in samples if newest.at - s.at <= recent_s)
        if oldest is newest:
            return None
        return oldest.queues[queue], newest.queues[queue]

    def span_s(self, queue: str, recent_s: float = RECENT_S) -> float:
        """How many seconds :meth:`change` covers for ``queue``."""
        samples = [s for s in self.samples() if queue in s.queues]
        if len(samples) < 2:
            return 0.0
        newest = samples[-1]
        oldest = next(s for s in samples if newest.at - s.at <= recent_s)
        return newest.at - oldest.at
