"""Running one delivery of a job: decode, validate, call the handler, decide the outcome.

This is the one place that turns what happened into what must happen to the
message — delete it, retry it after a backoff, or dead-letter it with a reason.
It performs no SQS calls itself: the transport applies the :class:`Outcome` in the
consumer process (see :mod:`workers.transport`), where deletes, visibility changes
and DLQ writes can share clients and, later, batches. It never raises for a job's
failure, so Celery's own failure handling only ever sees genuine worker faults.
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ValidationError

from infra.envelope import Envelope, EnvelopeError, decode
from infra.topology import Topology, import_object, payload_model
from infra.topology.model import MAX_VISIBILITY_TIMEOUT_S, RetryPolicy
from workers.api import Handler, JobContext, PermanentError, RetryLater
from workers.backoff import backoff_delay_s
from workers.failure import Failure

log = structlog.stdlib.get_logger("conveyor.worker")

OutcomeKind = Literal["succeeded", "retry", "dead_letter"]


@dataclass(frozen=True)
class Outcome:
    """What to do with the message of one delivery (picklable: crosses the process pool)."""

    kind: OutcomeKind
    queue: str
    attempt: int
    job_id: str | None = None
    job_type: str | None = None
    trace_id: str | None = None
    #: retry: seconds until the next attempt (the new visibility timeout).
    delay_s: int = 0
    #: retry: the error that caused it.
    error_type: str | None = None
    error: str | None = None
    #: dead_letter: the record written with the message to the DLQ.
    failure: Failure | None = None
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def log_fields(self) -> dict[str, Any]:
        """The fields that identify the job in log events."""
        return {
            "job_id": self.job_id,
            "job_type": self.job_type,
            "queue": self.queue,
            "attempt": self.attempt,
            "trace_id": self.trace_id,
        }


def worker_id() -> str:
    """``host:pid`` of this process, recorded in failure records."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _iso_from_ms(value: object) -> str | None:
    try:
        return datetime.fromtimestamp(int(str(value)) / 1000, UTC).isoformat()
    except (TypeError, ValueError):
        return None


def receive_count(message: Mapping[str, Any]) -> int:
    """SQS's ApproximateReceiveCount: the attempt number, which survives worker crashes."""
    try:
        return max(1, int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError):
        return 1


class JobRunner:
    """Runs deliveries for the queues of one worker node."""

    def __init__(
        self, topology: Topology, queues: Iterable[str], *, rng: random.Random | None = None
    ) -> None:
        self.topology = topology
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        # Resolve every handler and payload model up front: a typo in queues.yaml
        # should stop the worker at start, not dead-letter every job later.
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._models: dict[str, type[BaseModel]] = {}
        for queue in queues:
            for job_type in topology.job_types_of_queue(queue):
                path = topology.handler_for(queue, job_type)
                if path is not None:
                    self._handlers[queue, job_type] = import_object(path)
                    self._models[job_type] = payload_model(topology, job_type)

    def run(self, message: Mapping[str, Any], queue: str) -> Outcome:
        """Run one received SQS ``message`` from declared ``queue``; return its outcome."""
        started = time.monotonic()
        attempt = receive_count(message)
        body = message.get("Body", "")
        try:
            envelope = decode(body)
        except EnvelopeError as exc:
            return self._dead_letter(message, queue, attempt, exc.reason, exc, None)
        ctx_fields = {
            "job_id": envelope.id,
            "job_type": envelope.type,
            "queue": queue,
            "attempt": attempt,
            "trace_id": envelope.trace_id,
        }
        with structlog.contextvars.bound_contextvars(**ctx_fields):
            outcome = self._run_envelope(message, queue, attempt, envelope)
        return _with_duration(outcome, time.monotonic() - started)

    def _run_envelope(
        self, message: Mapping[str, Any], queue: str, attempt: int, envelope: Envelope
    ) -> Outcome:
        job_type = envelope.type
        if job_type not in self.topology.job_types:
            error = LookupError(f"unknown job type '{job_type}'")
            return self._dead_letter(message, queue, attempt, "unknown_job_type", error, envelope)
        handler = self._handlers.get((queue, job_type))
        if handler is None:
            error = LookupError(f"queue '{queue}' has no handler for job type '{job_type}'")
            return self._dead_letter(message, queue, attempt, "no_handler", error, envelope)
        if envelope.dataref is not None:
            error = NotImplementedError(f"payload is claim-checked at {envelope.dataref}")
            return self._dead_letter(
                message, queue, attempt, "unsupported_dataref", error, envelope
            )
        try:
            payload = self._models[job_type].model_validate(envelope.data)
        except ValidationError as exc:
            return self._dead_letter(message, queue, attempt, "invalid_payload", exc, envelope)

        policy = self.topology.retry_for(queue, job_type)
        ctx = JobContext(
            job_id=envelope.id,
            job_type=job_type,
            attempt=attempt,
            max_attempts=policy.max_attempts,
            queue=queue,
            enqueued_at=envelope.time,
            trace_id=envelope.trace_id,
            log=log.bind(),
        )
        log.info("job.started", max_attempts=policy.max_attempts)
        try:
            handler(payload, ctx)
        except PermanentError as exc:
            return self._dead_letter(message, queue, attempt, "permanent_error", exc, envelope)
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried or dead-lettered
            return self._failed_attempt(message, queue, attempt, envelope, policy, exc)
        log.info("job.succeeded")
        return Outcome(
            "succeeded", queue, attempt, envelope.id, job_type, trace_id=envelope.trace_id
        )

    def _failed_attempt(
        self,
        message: Mapping[str, Any],
        queue: str,
        attempt: int,
        envelope: Envelope,
        policy: RetryPolicy,
        exc: Exception,
    ) -> Outcome:
        if attempt >= policy.max_attempts:
            return self._dead_letter(
                message, queue, attempt, "attempts_exhausted", exc, envelope, policy.max_attempts
            )
        if isinstance(exc, RetryLater) and exc.delay_s is not None:
            # The handler knows better (e.g. a Retry-After it was given); still whole
            # seconds and within SQS's 12 h visibility limit.
            delay_s = min(max(0, math.ceil(exc.delay_s)), MAX_VISIBILITY_TIMEOUT_S)
        else:
            delay_s = backoff_delay_s(attempt, policy.backoff, self._rng)
        log.warning(
            "job.failed",
            error_type=type(exc).__name__,
            error=str(exc),
            retry_in_s=delay_s,
            exc_info=not isinstance(exc, RetryLater),
        )
        return Outcome(
            "retry",
            queue,
            attempt,
            envelope.id,
            envelope.type,
            trace_id=envelope.trace_id,
            delay_s=delay_s,
            error_type=type(exc).__name__,
            error=str(exc),
        )

    def _dead_letter(
        self,
        message: Mapping[str, Any],
        queue: str,
        attempt: int,
        reason: str,
        exc: BaseException,
        envelope: Envelope | None,
        max_attempts: int | None = None,
    ) -> Outcome:
        if max_attempts is None:
            max_attempts = (
                self.topology.retry_for(queue, envelope.type).max_attempts
                if envelope is not None and envelope.type in self.topology.job_types
                else attempt
            )
        failure = Failure(
            reason=reason,
            error_type=type(exc).__name__,
            error_message=str(exc),
            attempts=attempt,
            max_attempts=max_attempts,
            queue=queue,
            worker=worker_id(),
            first_attempt_at=_iso_from_ms(
                message.get("Attributes", {}).get("ApproximateFirstReceiveTimestamp")
            ),
            last_failure_at=datetime.now(UTC).isoformat(),
            job_id=envelope.id if envelope else None,
            job_type=envelope.type if envelope else None,
            traceback="".join(traceback.format_exception(exc)) if exc.__traceback__ else "",
        )
        log.warning(
            "job.failed", reason=reason, error_type=failure.error_type, error=failure.error_message
        )
        return Outcome(
            "dead_letter",
            queue,
            attempt,
            failure.job_id,
            failure.job_type,
            trace_id=envelope.trace_id if envelope else None,
            error_type=failure.error_type,
            error=failure.error_message,
            failure=failure,
        )


def _with_duration(outcome: Outcome, duration_s: float) -> Outcome:
    return Outcome(**{**outcome.__dict__, "duration_s": round(duration_s, 6)})
