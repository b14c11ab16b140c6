"""Publishing due jobs through the producer's own path: publisher, claim check, ledger.

:meth:`DuePublisher.publish_timers` publishes stored envelopes unchanged (the bytes
the API built when the job was enqueued: same id, payload, trace, FIFO ids, so the
same fan-out and filters). :meth:`DuePublisher.publish_job` builds a new job's
envelope exactly as the API does (:func:`infra.envelope.make_envelope`, the claim
check for a large payload, the type's FIFO group) and publishes it — the entry point
for cron schedules, whose job id is derived from schedule and tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.claim_check import ClaimCheckError, claim_check_for
from infra.envelope import Envelope, EnvelopeError, decode, make_envelope
from infra.ledger import QueuedJob, ledger_for
from infra.logs import get_logger
from infra.timers import Timer
from infra.topology import Topology
from producers.enqueue import Offloader, QueuedRecorder, message_group_id
from producers.publisher import Outgoing, Published, Publisher, PublishError

#: The CloudEvents ``source`` of jobs the scheduler makes itself (cron ticks). Delayed
#: jobs keep the source of their enqueue (``/conveyor/api``).
SCHEDULER_SOURCE = "/conveyor/scheduler"

log = get_logger("conveyor.scheduler")


class DuePublisher:
    """Publishes due jobs to their topics and records them as queued (thread-safe)."""

    def __init__(
        self,
        topology: Topology,
        publisher: Publisher,
        *,
        recorder: QueuedRecorder | None = None,
        offloader: Offloader | None = None,
    ) -> None:
        self.topology = topology
        self.publisher = publisher
        self.recorder = recorder
        self.offloader = offloader

    @classmethod
    def for_topology(cls, topology: Topology, *, publish_threads: int = 8) -> DuePublisher:
        """A publisher with the topology's ledger and claim check, as the API has them."""
        return cls(
            topology,
            Publisher(topology, threads=publish_threads),
            recorder=ledger_for(topology),
            offloader=claim_check_for(topology),
        )

    def close(self) -> None:
        """Stop the publishing threads."""
        self.publisher.close()

    def publish_timers(self, timers: Sequence[Timer]) -> list[Published | PublishError]:
        """Publish stored delayed jobs; one result per timer, in order, never an exception.

        Published ones are recorded in the ledger as queued (with their due time).
        """
        results: list[Published | PublishError | None] = [None] * len(timers)
        traces: list[str | None] = [None] * len(timers)
        outgoing: list[tuple[int, Outgoing]] = []
        for index, timer in enumerate(timers):
            try:
                envelope = decode(timer.envelope_json)
            except EnvelopeError as exc:
                results[index] = PublishError(f"the stored envelope is unreadable: {exc}")
                continue
            if envelope.type not in self.topology.job_types:
                results[index] = PublishError(
                    f"job type '{envelope.type}' is not in queues.yaml any more"
                )
                continue
            traces[index] = envelope.trace_id
            outgoing.append(
                (index, Outgoing(envelope, timer.message_group_id, timer.deduplication_id))
            )
        if outgoing:
            published = self.publisher.publish_many([o for _, o in outgoing])
            for (index, _), result in zip(outgoing, published, strict=True):
                results[index] = result
        final = [r if r is not None else PublishError("not published") for r in results]
        self._record(
            [
                QueuedJob(
                    t.job_id,
                    t.job_type,
                    self.topology.queues_receiving(t.job_type),
                    trace,
                    t.key_name,
                    due_at=t.due_at,
                )
                for t, r, trace in zip(timers, final, traces, strict=True)
                if isinstance(r, Published)
            ]
        )
        return final

    def publish_job(
        self,
        job_type: str,
        data: dict[str, Any],
        *,
        job_id: str,
        source: str = SCHEDULER_SOURCE,
        traceparent: str | None = None,
    ) -> Published:
        """Build ``job_type``'s envelope for ``data`` (already validated) with ``job_id``,
        as the API would, and publish it; record it as queued.

        Raises :class:`PublishError` when it was not published (SNS or S3 failed, the
        envelope is too large). Publishing the same ``job_id`` twice is one job for the
        idempotency guard.
        """
        envelope: Envelope = make_envelope(
            job_type, data, job_id=job_id, source=source, traceparent=traceparent
        )
        if self.offloader is not None and self.offloader.needs_offload(envelope):
            try:
                envelope = self.offloader.offload(envelope)
            except ClaimCheckError as exc:
                raise PublishError(f"the payload could not be stored in S3: {exc}") from exc
        group = message_group_id(self.topology, job_type, data, None)
        [result] = self.publisher.publish_many([Outgoing(envelope, message_group_id=group)])
        if isinstance(result, PublishError):
            raise result
        queues = self.topology.queues_receiving(job_type)
        self._record([QueuedJob(job_id, job_type, queues, envelope.trace_id)])
        return result

    def _record(self, jobs: list[QueuedJob]) -> None:
        if jobs and self.recorder is not None:
            self.recorder.record_queued(jobs)
