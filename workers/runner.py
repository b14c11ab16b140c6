"""Running one delivery of a job: decode, validate, call the handler, decide the outcome.

This is the one place that turns what happened into what must happen to the
message — delete it, retry it after a backoff, or dead-letter it with a reason.
It performs no SQS calls itself: the transport applies the :class:`Outcome` in the
consumer process (see :mod:`workers.transport`), where deletes, visibility changes
and DLQ writes share clients and batches. It never raises for a job's
failure, so Celery's own failure handling only ever sees genuine worker faults.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import random
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from infra.backoff import backoff_delay_s
from infra.claim_check import ClaimCheck, ClaimCheckError, PayloadUnavailableError, claim_check_for
from infra.envelope import Envelope
from infra.errors import ConveyorError
from infra.failure import REDRIVE_COUNT, Failure
from infra.limits import MAX_VISIBILITY_TIMEOUT_S
from infra.topology import Topology, import_object, payload_model
from infra.topology.model import RetryPolicy
from infra.validation import errors_line
from workers.api import Handler, JobContext, PermanentError, RetryLater
from workers.hooks import DEFAULT_HOOKS, Hook, Job
from workers.intake import Refusal, read_job
from workers.outcome import Outcome, OutcomeKind

__all__ = ["JobRunner", "Outcome", "OutcomeKind", "receive_count", "worker_id"]

log = structlog.stdlib.get_logger("conveyor.worker")


def worker_id() -> str:
    """``host:pid`` of this process, recorded in failure records."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _iso_from_ms(value: object) -> str | None:
    try:
        return datetime.fromtimestamp(int(str(value)) / 1000, UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):  # absent, or not a time
        return None


def _attributes(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """The message's system attributes (``{}`` when absent or not a mapping)."""
    attributes = message.get("Attributes")
    return attributes if isinstance(attributes, Mapping) else {}


def _epoch_s(millis: object) -> float | None:
    try:
        seconds = int(str(millis)) / 1000
        datetime.fromtimestamp(seconds, UTC)  # a time a datetime can hold
    except (TypeError, ValueError, OverflowError, OSError):  # absent, or not a time
        return None
    return seconds


def _redrives(envelope: Envelope | None) -> int:
    """The envelope's redrive count (an extension the DLQ tools stamp), 0 if absent or odd."""
    if envelope is None:
        return 0
    value = (envelope.model_extra or {}).get(REDRIVE_COUNT, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _enqueued_at(envelope: Envelope, message: Mapping[str, Any]) -> datetime:
    """When the job was created: its ``time``, optional in CloudEvents; else when SQS got it."""
    if envelope.time is not None:
        return envelope.time
    sent_s = _epoch_s(_attributes(message).get("SentTimestamp"))
    return datetime.fromtimestamp(sent_s, UTC) if sent_s is not None else datetime.now(UTC)


class InvalidPayloadError(ConveyorError, ValueError):
    """A payload that fails its job type's model: the message names fields, never values."""

    @classmethod
    def of(cls, exc: ValidationError) -> InvalidPayloadError:
        # pydantic's own message quotes the input (input_value=…), which would put the
        # payload into worker logs and failure records; the DLQ body still has it.
        fields = errors_line(exc, whole="payload")
        return cls(f"the payload does not match {exc.title}: {fields}")


def receive_count(message: Mapping[str, Any]) -> int:
    """SQS's ApproximateReceiveCount: the attempt number, which survives worker crashes."""
    try:
        return max(1, int(_attributes(message).get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError):
        return 1


@dataclass(frozen=True)
class _Delivery:
    """One receive of one message, as the runner sees it."""

    message: Mapping[str, Any]
    queue: str
    attempt: int
    envelope: Envelope | None = None

    def outcome(self, kind: OutcomeKind, **fields: Any) -> Outcome:
        env = self.envelope
        return Outcome(
            kind,
            self.queue,
            self.attempt,
            env.id if env else None,
            env.type if env else None,
            trace_id=env.trace_id if env else None,
            **fields,
        )


class JobRunner:
    """Runs deliveries for the queues of one worker node."""

    def __init__(
        self,
        topology: Topology,
        queues: Iterable[str],
        *,
        hooks: Sequence[Hook] = DEFAULT_HOOKS,
        rng: random.Random | None = None,
        claim_check: ClaimCheck | None = None,
        awaiter: Callable[[Awaitable[object], float | None], object] | None = None,
        time_limit: Callable[[float], AbstractContextManager[object]] | None = None,
    ) -> None:
        self.topology = topology
        #: Waits for an ``async def`` handler's coroutine, with the job type's
        #: ``max_runtime_s`` (the asyncio pool's :func:`workers.aio.bridge.await_job`).
        self.awaiter = awaiter
        #: Bounds the handler's call by the job type's ``max_runtime_s`` (the solo
        #: pool's :func:`workers.time_limit.alarm_limit`); None: the pool bounds it.
        self.time_limit = time_limit
        self.hooks = tuple(hooks)
        #: Fetches claim-checked payloads (``dataref``) from S3.
        self.claim_check = claim_check or claim_check_for(topology)
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

    def run(
        self, message: Mapping[str, Any], queue: str, *, refusal: Refusal | None = None
    ) -> Outcome:
        """Run one received SQS ``message`` from declared ``queue``; return its outcome.

        The message is read by :func:`workers.intake.read_job`; ``refusal``: the
        caller could not even shape the message (the Lambda adapter's record), so it
        is dead-lettered with that reason without being read.
        """
        started = time.monotonic()
        delivery = _Delivery(message, queue, receive_count(message))
        read = refusal or read_job(message)
        if isinstance(read, Envelope):
            delivery = replace(delivery, envelope=read)
        envelope = delivery.envelope

        def execute() -> Outcome:
            if isinstance(read, Refusal):
                return self._dead_letter(delivery, read.reason, read.error)
            return self._run_envelope(delivery, read)

        job = Job(
            queue=queue,
            attempt=delivery.attempt,
            job_id=envelope.id if envelope else None,
            job_type=envelope.type if envelope else None,
            trace_id=envelope.trace_id if envelope else None,
            sent_at_s=_epoch_s(_attributes(message).get("SentTimestamp")),
            redrives=_redrives(envelope),
            traceparent=envelope.traceparent if envelope else None,
        )
        call: Callable[[], Outcome] = execute
        for hook in reversed(self.hooks):
            call = functools.partial(hook, job, call)
        outcome = call()
        return replace(outcome, duration_s=round(time.monotonic() - started, 6))

    def _refusal(self, delivery: _Delivery, envelope: Envelope) -> Outcome | None:
        """A dead-letter outcome if the job cannot run here at all, else None."""
        job_type = envelope.type
        error: Exception
        if job_type not in self.topology.job_types:
            error = LookupError(f"unknown job type '{job_type}'")
            return self._dead_letter(delivery, "unknown_job_type", error)
        if (delivery.queue, job_type) not in self._handlers:
            error = LookupError(f"queue '{delivery.queue}' has no handler for '{job_type}'")
            return self._dead_letter(delivery, "no_handler", error)
        return None

    def _run_envelope(self, delivery: _Delivery, envelope: Envelope) -> Outcome:
        refusal = self._refusal(delivery, envelope)
        if refusal is not None:
            return refusal
        job_type = envelope.type
        policy = self.topology.retry_for(delivery.queue, job_type)
        payload = self._payload(delivery, envelope, policy)
        if isinstance(payload, Outcome):
            return payload
        runtime_s = self.topology.job_types[job_type].max_runtime_s
        ctx = JobContext(
            job_id=envelope.id,
            job_type=job_type,
            attempt=delivery.attempt,
            max_attempts=policy.max_attempts,
            queue=delivery.queue,
            enqueued_at=_enqueued_at(envelope, delivery.message),
            trace_id=envelope.trace_id,
            log=log.bind(),
            deadline=time.monotonic() + runtime_s if runtime_s is not None else None,
        )
        # DEBUG: at INFO a job logs one line, for its outcome (job.succeeded here;
        # job.retry_scheduled and job.dead_lettered where the consumer applies them).
        log.debug("job.started", max_attempts=policy.max_attempts)
        limit = (
            self.time_limit(runtime_s)
            if self.time_limit is not None and runtime_s is not None
            else nullcontext()
        )
        try:
            with limit:
                result = self._handlers[delivery.queue, job_type](payload, ctx)
                if inspect.isawaitable(result):
                    self._await(result, job_type)
        except PermanentError as exc:
            return self._dead_letter(delivery, "permanent_error", exc)
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried or dead-lettered
            return self._failed_attempt(delivery, policy, exc)
        log.info("job.succeeded")
        return delivery.outcome("succeeded")

    def _await(self, result: Awaitable[object], job_type: str) -> object:
        """The result of an ``async def`` handler, awaited on the asyncio pool's loop."""
        if self.awaiter is None:
            if inspect.iscoroutine(result):
                result.close()  # never awaited: no "never awaited" warning
            raise TypeError(
                f"the handler of '{job_type}' is async def: it needs worker_pool: asyncio"
            )
        return self.awaiter(result, self.topology.job_types[job_type].max_runtime_s)

    def _payload(
        self, delivery: _Delivery, envelope: Envelope, policy: RetryPolicy
    ) -> BaseModel | Outcome:
        """The validated payload, or the outcome of a delivery whose payload cannot be had."""
        try:
            # A claim-checked payload is fetched here, so the handler sees the original data.
            data = self.claim_check.resolve(envelope)
        except PayloadUnavailableError as exc:  # gone, or not ours: retrying cannot help
            return self._dead_letter(delivery, exc.reason, exc)
        except ClaimCheckError as exc:  # S3 failed: an ordinary failed attempt
            return self._failed_attempt(delivery, policy, exc)
        try:
            return self._models[envelope.type].model_validate(data)
        except ValidationError as exc:
            return self._dead_letter(delivery, "invalid_payload", InvalidPayloadError.of(exc))
        except Exception as exc:  # noqa: BLE001 - a model's validator that raised something else
            return self._dead_letter(delivery, "invalid_payload", exc)

    def _failed_attempt(self, delivery: _Delivery, policy: RetryPolicy, exc: Exception) -> Outcome:
        if delivery.attempt >= policy.max_attempts:
            return self._dead_letter(delivery, "attempts_exhausted", exc)
        if isinstance(exc, RetryLater) and exc.delay_s is not None:
            # The handler knows better (e.g. a Retry-After it was given); still whole
            # seconds and within SQS's 12 h visibility limit.
            delay_s = min(max(0, math.ceil(exc.delay_s)), MAX_VISIBILITY_TIMEOUT_S)
        else:
            delay_s = backoff_delay_s(delivery.attempt, policy.backoff, self._rng)
        # The outcome's line (job.retry_scheduled, logged where the visibility change
        # is applied) carries the error and its traceback: one line per outcome.
        log.debug("job.failed", error_type=type(exc).__name__, error=str(exc), retry_in_s=delay_s)
        trace = "" if isinstance(exc, RetryLater) else "".join(traceback.format_exception(exc))
        return delivery.outcome(
            "retry",
            delay_s=delay_s,
            error_type=type(exc).__name__,
            error=str(exc),
            extra={"traceback": trace} if trace else {},
        )

    def _max_attempts(self, delivery: _Delivery) -> int:
        env = delivery.envelope
        if env is not None and (delivery.queue, env.type) in self._handlers:
            return self.topology.retry_for(delivery.queue, env.type).max_attempts
        return delivery.attempt  # not a job this queue runs: this was its only attempt

    def _dead_letter(self, delivery: _Delivery, reason: str, exc: BaseException) -> Outcome:
        env = delivery.envelope
        attributes = _attributes(delivery.message)
        failure = Failure(
            reason=reason,
            error_type=type(exc).__name__,
            error_message=str(exc),
            attempts=delivery.attempt,
            max_attempts=self._max_attempts(delivery),
            queue=delivery.queue,
            worker=worker_id(),
            first_attempt_at=_iso_from_ms(attributes.get("ApproximateFirstReceiveTimestamp")),
            last_failure_at=datetime.now(UTC).isoformat(),
            job_id=env.id if env else None,
            job_type=env.type if env else None,
            traceback="".join(traceback.format_exception(exc)) if exc.__traceback__ else "",
        )
        # The outcome's line is job.dead_lettered, once the DLQ has the message.
        log.debug(
            "job.failed", reason=reason, error_type=failure.error_type, error=failure.error_message
        )
        return delivery.outcome(
            "dead_letter",
            error_type=failure.error_type,
            error=failure.error_message,
            failure=failure,
        )
