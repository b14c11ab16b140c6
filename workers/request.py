"""The Celery request hook that carries a job's outcome from the pool to the consumer.

The job runs in a pool process (or thread); its message is owned by the consumer.
A retry or dead-letter outcome travels back as :class:`OutcomeSignal` (a declared,
expected exception, so Celery logs no error), and :class:`JobRequest` hands it to
the transport before acknowledging — see :mod:`workers.transport`.
"""

from __future__ import annotations

from typing import Any

from billiard.einfo import ExceptionWithTraceback  # type: ignore[attr-defined]
from celery.worker.request import Request
from celery.worker.state import task_ready

from infra.errors import JobSignal
from workers import compat
from workers.outcome import Outcome
from workers.transport import OUTCOME_KEY, job_started

compat.require("celery.worker.state.task_ready", "billiard.einfo:ExceptionWithTraceback.exc")


class OutcomeSignal(JobSignal):
    """Raised by the task to report a retry or dead-letter outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome

    def __str__(self) -> str:
        return f"{self.outcome.kind}: {self.outcome.error_type}: {self.outcome.error}"


@compat.overrides
class JobRequest(Request):
    """A Celery request whose expected outcomes go to the transport, not to failure handling."""

    def on_accepted(self, pid: str, time_accepted: float) -> None:  # pid: as the stubs type it
        """The pool started the job: the heartbeat's runtime limit counts from now."""
        job_started(self.message)
        super().on_accepted(pid, time_accepted)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        """Route :class:`OutcomeSignal` to the transport; anything else is Celery's business."""
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, OutcomeSignal):
            task_ready(self)
            self.message.delivery_info[OUTCOME_KEY] = exc.outcome
            self.acknowledge()
            return
        # Genuine faults (a pool process killed mid-job, a time limit): acks_late with
        # reject_on_worker_lost rejects with requeue, and the transport makes the
        # message visible again without deleting it.
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
