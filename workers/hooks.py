"""Hooks around every job: cross-cutting work kept out of handlers and out of the runner.

A hook is ``hook(job, proceed) -> Outcome``: it may act before and after calling
``proceed()`` (the rest of the chain, then the handler), or answer without calling
it (the idempotency guard). The runner wraps each delivery in its hooks, in order:
the first listed is the outermost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

import structlog

from workers.metrics import instruments
from workers.outcome import Outcome

log = structlog.stdlib.get_logger("conveyor.worker")


@dataclass(frozen=True)
class Job:
    """What hooks know of a delivery. Ids are None when the body was not a valid envelope."""

    queue: str
    attempt: int
    job_id: str | None
    job_type: str | None
    trace_id: str | None
    #: When SQS accepted the message (SentTimestamp), epoch seconds.
    sent_at_s: float | None


Proceed = Callable[[], Outcome]
Hook = Callable[[Job, Proceed], Outcome]


def log_context(job: Job, proceed: Proceed) -> Outcome:
    """Bind job id, type, queue, attempt and trace id to every log event of the job."""
    with structlog.contextvars.bound_contextvars(
        job_id=job.job_id,
        job_type=job.job_type,
        queue=job.queue,
        attempt=job.attempt,
        trace_id=job.trace_id,
    ):
        return proceed()


def record_metrics(job: Job, proceed: Proceed) -> Outcome:
    """Count attempts and outcomes, time the handler, measure queue lag at start."""
    m = instruments()
    job_type = job.job_type or "unknown"
    if job.sent_at_s is not None:
        m.lag.labels(job.queue).observe(max(0.0, time.time() - job.sent_at_s))
    m.started.labels(job_type, job.queue).inc()
    started = time.perf_counter()
    outcome = proceed()
    m.duration.labels(job_type, job.queue).observe(time.perf_counter() - started)
    if outcome.kind == "succeeded":
        m.succeeded.labels(job_type, job.queue).inc()
        return outcome
    m.failed.labels(job_type, job.queue).inc()
    if outcome.kind == "retry":
        m.retried.labels(job_type, job.queue).inc()
    else:
        reason = outcome.failure.reason if outcome.failure else "unknown"
        m.dead_lettered.labels(job_type, job.queue, reason).inc()
    return outcome


class SuccessStore(Protocol):
    """Remembers which (queue, job id) succeeded."""

    def succeeded(self, queue: str, job_id: str) -> bool:
        """Whether the job already succeeded on ``queue``."""
        ...

    def mark_succeeded(self, queue: str, job_id: str) -> None:
        """Record a success (best effort: a failure to record is logged, not raised)."""
        ...


class IdempotencyGuard:
    """Skip a job whose id already succeeded on this queue (for the listed job types).

    Deliveries are at least once; handlers should be idempotent anyway. The guard
    saves the work of a redelivery or a redrive duplicate after a success was
    recorded. Two deliveries running at the same moment can both run: it is a
    check before and a record after, not a lock.
    """

    def __init__(self, store: SuccessStore, job_types: Collection[str]) -> None:
        self.store = store
        self.job_types = frozenset(job_types)

    def __call__(self, job: Job, proceed: Proceed) -> Outcome:
        """Run the job unless it already succeeded here; record its success."""
        if job.job_id is None or job.job_type not in self.job_types:
            return proceed()
        if self.store.succeeded(job.queue, job.job_id):
            log.info("job.skipped_duplicate")
            return Outcome(
                "succeeded",
                job.queue,
                job.attempt,
                job.job_id,
                job.job_type,
                trace_id=job.trace_id,
                extra={"skipped": True},
            )
        outcome = proceed()
        if outcome.kind == "succeeded":
            self.store.mark_succeeded(job.queue, job.job_id)
        return outcome


#: The hooks every worker runs, outermost first (the guard, if any, goes innermost).
DEFAULT_HOOKS: tuple[Hook, ...] = (log_context, record_metrics)
