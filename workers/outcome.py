"""What must happen to a delivery's message: the runner decides, the consumer applies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from infra.failure import Failure

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
