"""Queues as tests see them: URLs, depths, receiving what is there, seeding a DLQ.

Depth is production's own reading (:func:`infra.aws.lookup.queue_depth`); these
helpers add what only tests do: receive a queue empty, wait for messages in a
DLQ, and put a job in a DLQ the way a worker dead-letters it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from infra import aws
from infra.aws.lookup import Depth, queue_depth
from infra.envelope import Envelope, encode, make_envelope
from infra.failure import Failure
from infra.topology import Topology
from tests.support.polling import eventually
from workers.dead_letter import dead_letter_request

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "Depth",
    "dead_letter",
    "depth",
    "dlq_url",
    "drained",
    "peek_until",
    "queue_url",
    "receive_all",
    "url_by_name",
    "visible_in_flight",
]


def url_by_name(name: str) -> str:
    """The URL of the queue whose AWS name is ``name``."""
    return aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


def queue_url(topology: Topology, queue: str) -> str:
    """The URL of ``queue`` (its queues.yaml name)."""
    return url_by_name(topology.queue_name(queue))


def dlq_url(topology: Topology, queue: str) -> str:
    """The URL of the dead-letter queue of ``queue`` (its queues.yaml name)."""
    return url_by_name(topology.dlq_name(queue))


def depth(url: str) -> Depth:
    """Visible, in-flight and delayed messages of the queue at ``url``."""
    return queue_depth(aws.client("sqs"), url)


def visible_in_flight(url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue at ``url``: what most assertions compare."""
    found = depth(url)
    return found.visible, found.in_flight


def drained(url: str) -> bool:
    """Whether the queue at ``url`` holds no message at all (visible, in flight or delayed)."""
    return depth(url) == Depth(0, 0, 0)


def receive_all(
    url: str, *, hold_s: int = 3600, sqs: SQSClient | None = None
) -> list[dict[str, Any]]:
    """Receive every visible message of ``url`` for good (hidden ``hold_s``), with all
    attributes; stops at the first empty answer (no long poll)."""
    sqs = sqs or aws.client("sqs")
    found: dict[str, dict[str, Any]] = {}
    while True:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=hold_s,
            WaitTimeSeconds=0,  # the test topologies long-poll 20 s by default
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            return list(found.values())
        found.update({m["MessageId"]: dict(m) for m in got})


def peek_until(url: str, count: int, *, what: str, wait_s: int = 0) -> list[dict[str, Any]]:
    """Wait until ``count`` distinct messages have been seen in ``url``; return them.

    They are left in place (received with a visibility timeout of 0), so a test can
    read the same DLQ again; ``wait_s`` is each receive's long poll.
    """
    sqs = aws.client("sqs")
    seen: dict[str, dict[str, Any]] = {}

    def probe() -> list[dict[str, Any]] | None:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_s,
            MessageAttributeNames=["All"],
            VisibilityTimeout=0,
        )
        for message in got.get("Messages", []):
            seen[message["MessageId"]] = dict(message)
        return list(seen.values()) if len(seen) >= count else None

    return eventually(probe, what=what)


def dead_letter(
    sqs: SQSClient,
    dlq_url: str,
    job_type: str,
    label: str,
    *,
    reason: str = "attempts_exhausted",
    error_type: str = "ValueError",
    error_message: str | None = None,
    attempts: int = 2,
    failed_at: datetime | None = None,
    group: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> Envelope:
    """Put a job in a DLQ the way a worker dead-letters it: original body, failure attribute.

    The payload is ``{"label": label}`` (the handlers' Note). ``group`` makes it a
    FIFO message of that message group.
    """
    envelope = make_envelope(job_type, {"label": label})
    failed_at = failed_at or datetime.now(UTC)
    failure = Failure(
        reason=reason,
        error_type=error_type,
        error_message=error_message or f"cannot process {label}",
        attempts=attempts,
        max_attempts=attempts,
        queue="work",
        worker="test-host:1",
        first_attempt_at=(failed_at - timedelta(seconds=3)).isoformat(),
        last_failure_at=failed_at.isoformat(),
        job_id=envelope.id,
        job_type=job_type,
        traceback=f'Traceback (most recent call last):\n  File "x.py"\n{error_type}: {label}\n',
    )
    # Exactly what a worker sends (workers.dead_letter), for a message received from the queue.
    received: dict[str, Any] = {
        "MessageId": str(uuid.uuid4()),
        "Body": encode(envelope),
        "MessageAttributes": attributes or {},
        "Attributes": {"MessageGroupId": group} if group is not None else {},
    }
    request = dead_letter_request(received, failure, dlq_url=dlq_url, fifo=group is not None)
    sqs.send_message(**request)
    return envelope
