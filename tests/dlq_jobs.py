"""Handlers for the DLQ tests' topology (tests/fixtures/dlq.yaml), and a way to seed a DLQ.

``fragile`` models a job whose dependency is down: it fails while the file
``$CONVEYOR_TEST_OUTBOX/dependency-down`` exists and succeeds once the test removes
it — the "fixed in between" of a redrive. Like :mod:`tests.jobs`, each attempt
appends a line to ``$CONVEYOR_TEST_OUTBOX/<job id>.jsonl``.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor import JobContext
from infra.envelope import Envelope, encode, make_envelope
from infra.failure import Failure
from tests.jobs import Note, _record
from workers.dead_letter import dead_letter_request

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: The flag file, relative to the outbox, whose presence makes ``fragile`` fail.
DEPENDENCY_DOWN = "dependency-down"


def fragile(payload: Note, ctx: JobContext) -> None:
    """Fails while the dependency is down; succeeds after."""
    if (Path(os.environ["CONVEYOR_TEST_OUTBOX"]) / DEPENDENCY_DOWN).exists():
        _record(ctx, "failed")
        raise ConnectionError(f"dependency down while processing {payload.label}")
    _record(ctx, "ok")


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

    ``group`` makes it a FIFO message of that message group.
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
