"""The handler API: what a job handler receives and what it may raise.

A handler is a plain typed function of the validated payload and a context::

    def resize_image(payload: ResizeImage, ctx: JobContext) -> None:
        ctx.log.info("resizing", width_px=payload.width_px)

It returns to succeed (the message is deleted), raises :class:`RetryLater` or any
other exception to be retried with backoff, or raises :class:`PermanentError` to go
to the dead-letter queue at once. Handlers must be idempotent: a job can arrive
more than once, always with the same ``ctx.job_id``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from infra.errors import JobSignal


@dataclass(frozen=True)
class JobContext:
    """Facts about the running attempt of a job."""

    job_id: str
    job_type: str
    #: 1 for the first attempt; SQS's ApproximateReceiveCount, so it survives crashes.
    attempt: int
    max_attempts: int
    #: The queue's declared name (``images``), not its AWS name.
    queue: str
    enqueued_at: datetime
    trace_id: str | None = None
    #: A structlog logger with job id, type, queue, attempt and trace id bound.
    log: structlog.stdlib.BoundLogger = field(default_factory=structlog.stdlib.get_logger)
    #: When the job type's ``max_runtime_s`` ends (``time.monotonic()``); None: no limit.
    deadline: float | None = None

    def time_left_s(self) -> float | None:
        """Seconds until ``max_runtime_s`` ends (negative once past); None without a limit.

        The cooperative stop of a threads pool, where nothing can interrupt a running
        thread: a long handler checks it between steps and stops (raises) in time.
        """
        return None if self.deadline is None else self.deadline - time.monotonic()

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure now sends the job to the dead-letter queue."""
        return self.attempt >= self.max_attempts


class RetryLater(JobSignal):
    """Try the job again later; ``delay_s`` replaces the backoff delay for this attempt."""

    def __init__(self, message: str = "retry requested", *, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class PermanentError(JobSignal):
    """The job can never succeed: dead-letter it now, without spending more attempts."""


Handler = Callable[[Any, JobContext], object]
