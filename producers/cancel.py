"""``DELETE /v1/jobs/{job_id}``: cancel a job that has not started.

What a cancel does depends on where the job is (see docs/scheduling.md, "Cancellation"):

- **a delayed job not yet due** (in the timer store, :mod:`infra.timers`): removed
  there, it is never published. 200, ``state: cancelled``.
- **a queued job** (the job ledger, ``ledger: true``): on every queue it fans out to
  where it has not started (not delivered yet, or ``retrying`` between attempts),
  the ledger's run item becomes ``cancelled`` (:meth:`infra.ledger.Ledger.cancel`);
  a worker that receives it deletes it without running the handler. 200.
- **a partial fan-out** (running or finished on one queue, not started on another):
  the queues where it has not started are cancelled, the others go on. 200, and
  ``queues`` says which is which; ``state`` is the overall state (e.g. ``running``).
- **started or finished everywhere**: not interrupted. 409, the body has ``state``
  and ``queues``.
- **nothing known**: 404 — an unknown id, a job enqueued by another API key (only the
  enqueuing key or an ``admin`` key may cancel; any other key is answered exactly as
  for an unknown id), or a queued job whose type does not record status.
- **a job type without the ledger**: once published, the API cannot find the job
  again (nothing stores it), so it cannot be cancelled: 409 when the API knows the
  type (a delayed job being published right now), or when no job type of the
  project sets ``ledger: true`` (whatever the id).

Cancelling again is idempotent: a cancelled job answers 200 with the same body.
The ledger or the timer store not answering is a 503 with Retry-After.
No ``from __future__ import annotations``: FastAPI reads the route's signature at runtime.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from infra.aws.errors import is_table_missing
from infra.aws.names import timers_table_name
from infra.errors import AwsError
from infra.ledger import (
    CANCELLABLE,
    JobRecord,
    Ledger,
    LedgerUnavailableError,
    QueuedJob,
    ledger_for,
    overall_state,
)
from infra.logs import get_logger
from infra.timers import Timer, TimerStore
from infra.topology import Topology
from producers.auth import ApiKey
from producers.guard import Guard
from producers.status import JOB_ID, RETRY_AFTER_UNAVAILABLE_S

log = get_logger("conveyor.api")

#: Ledger states of a job that waits in the timer store (the delayed-jobs work adds it).
WAITING_STATES: frozenset[str] = frozenset({"scheduled"})


class JobCancelled(BaseModel):
    """200: the job was cancelled (now or by an earlier request) on the queues listed."""

    id: str = Field(description="The job id.")
    type: str = Field(description="The job type.")
    state: str = Field(
        description="The job's overall state now: cancelled, or — when it had started on"
        " some queue — the least advanced state of its queues (e.g. running)."
    )
    queues: dict[str, str] = Field(description="Per queue the job fans out to: its state now.")
    detail: str = Field(description="What happened, in one sentence.")


class NotCancelled(BaseModel):
    """409: the job cannot be cancelled; ``state`` says where it is."""

    detail: str = Field(description="Why it was not cancelled.")
    id: str = Field(description="The job id.")
    state: str | None = Field(
        None,
        description="The job's overall state (running, succeeded, dead-lettered …); null"
        " when the job cannot be known (its job type does not record status).",
    )
    queues: dict[str, str] = Field(default_factory=dict, description="Per queue: its state.")


class CancelError(BaseModel):
    """404 / 503: nothing to cancel, or the stores cannot answer."""

    detail: str


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {
        "model": CancelError,
        "description": "No such job to cancel: unknown id, enqueued by another API key, or"
        " a queued job whose type does not record status (`ledger: true`).",
    },
    409: {
        "model": NotCancelled,
        "description": "The job started (running) or finished on every queue: it is not"
        " interrupted. Or it cannot be found because its type does not record status.",
    },
    503: {
        "model": CancelError,
        "description": "The job ledger or the timer store cannot be read or written:"
        " retry after Retry-After seconds.",
    },
}


@dataclass(frozen=True)
class CancelAnswer:
    """What the route answers: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]

    def response(self) -> JSONResponse:
        """As a FastAPI response (503 with Retry-After)."""
        headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)} if self.status == 503 else None
        return JSONResponse(self.body, status_code=self.status, headers=headers)


class UnavailableError(Exception):
    """The ledger or the timer store failed: the answer is a 503 with ``detail``."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _ledger_unavailable(exc: LedgerUnavailableError) -> UnavailableError:
    """What the client is told: no table name (the log has the full reason)."""
    if exc.__cause__ is not None and is_table_missing(exc.__cause__):
        return UnavailableError(
            "cannot cancel: the job ledger is not provisioned (run `conveyor infra apply`)"
        )
    return UnavailableError("cannot cancel now: the job ledger cannot be read or written")


class Canceller:
    """Cancels jobs of ``topology``: in the timer store if waiting, else in the ledger.

    ``may_cancel(owner)`` is asked with the name of the key that enqueued the job
    (None: not recorded); ``by`` is the caller's key name, recorded on cancelled items.
    """

    def __init__(self, topology: Topology, ledger: Ledger | None, timers: TimerStore) -> None:
        self.topology = topology
        self.ledger = ledger
        self.timers = timers
        recorded = ", ".join(topology.ledger_job_types()) or "none"
        self._not_found_detail = (
            "no job '{job_id}' to cancel (unknown id, or a queued job whose type does not"
            f" record status — only types with ledger: true can be cancelled once queued;"
            f" recorded: {recorded})"
        )

    def cancel(
        self, job_id: str, may_cancel: Callable[[str | None], bool], by: str | None
    ) -> CancelAnswer:
        """Cancel ``job_id`` if it has not started; the answer the route gives."""
        try:
            return self._cancel(job_id, may_cancel, by)
        except UnavailableError as exc:
            return CancelAnswer(503, {"detail": exc.detail})

    def _cancel(
        self, job_id: str, may_cancel: Callable[[str | None], bool], by: str | None
    ) -> CancelAnswer:
        record = self._record(job_id)
        waiting = record is None or str(record.state) in WAITING_STATES
        # A job the ledger shows queued (or further) never asks the timer store.
        timer = self._timer(job_id) if waiting else None
        if timer is None and record is None:
            return self._not_found(job_id)
        owner = timer.key_name if timer is not None else record.key_name if record else None
        if not may_cancel(owner):
            return self._not_found(job_id, refused=True)
        if timer is not None:
            return self._cancel_waiting(timer, by)
        assert record is not None
        if waiting:  # recorded as waiting, but its timer is gone: published since
            record = self._record(job_id) or record
        return self._cancel_queued(record, by)

    def _cancel_waiting(self, timer: Timer, by: str | None) -> CancelAnswer:
        try:
            removed = self.timers.cancel(timer.job_id)
        except AwsError as exc:
            log.warning("job cancel failed", job_id=timer.job_id, store="timers", reason=str(exc))
            raise UnavailableError("cannot cancel now: the timer store cannot be written") from None
        if removed == "cancelled":
            return self._cancelled_delayed(timer, by)
        # Published, or being published, right now: cancel it as a queued job.
        return self._cancel_published(timer, by)

    # -- lookups ------------------------------------------------------------------------

    def _record(self, job_id: str) -> JobRecord | None:
        if self.ledger is None:
            return None
        try:
            return self.ledger.get(job_id)
        except LedgerUnavailableError as exc:
            log.warning("job cancel failed", job_id=job_id, store="ledger", reason=str(exc))
            raise _ledger_unavailable(exc) from None

    def _timer(self, job_id: str) -> Timer | None:
        try:
            return self.timers.get(job_id)
        except AwsError as exc:
            log.warning("job cancel failed", job_id=job_id, store="timers", reason=str(exc))
            raise UnavailableError("cannot cancel now: the timer store cannot be read") from None

    # -- answers ------------------------------------------------------------------------

    def _not_found(self, job_id: str, *, refused: bool = False) -> CancelAnswer:
        """404 for an unknown id and for another key's job alike (ids cannot be probed).

        Without any ledger in the project a queued job can never be found: 409 says why.
        """
        if refused:
            log.info("job cancel refused", job_id=job_id)
        if self.ledger is None:
            return self._no_ledger(job_id)
        return CancelAnswer(404, {"detail": self._not_found_detail.format(job_id=job_id)})

    @staticmethod
    def _no_ledger(job_id: str, job_type: str | None = None) -> CancelAnswer:
        what = f"its job type {job_type} does not" if job_type else "no job type"
        detail = (
            f"job '{job_id}' cannot be cancelled: it is not a delayed job waiting for its"
            f" time, and a queued job can only be cancelled when its type records status"
            f" ({what} set ledger: true in queues.yaml)"
        )
        return CancelAnswer(409, NotCancelled(detail=detail, id=job_id).model_dump())

    def _cancelled_delayed(self, timer: Timer, by: str | None) -> CancelAnswer:
        """The timer is gone: the job is never published. The ledger is told, best effort."""
        queues = self.topology.queues_receiving(timer.job_type)
        if self.ledger is not None and self.ledger.records(timer.job_type):
            try:
                self.ledger.cancel(timer.job_id, timer.job_type, queues, by=by)
                job = QueuedJob(timer.job_id, timer.job_type, queues, key_name=timer.key_name)
                self.ledger.record_unpublished(job)
            except LedgerUnavailableError as exc:
                # Still cancelled (it will never be published); its status lags.
                log.warning("job cancel not recorded", job_id=timer.job_id, reason=str(exc))
        log.info("job cancelled", job_id=timer.job_id, job_type=timer.job_type, was="delayed")
        return CancelAnswer(
            200,
            JobCancelled(
                id=timer.job_id,
                type=timer.job_type,
                state="cancelled",
                queues=dict.fromkeys(sorted(queues), "cancelled"),
                detail="the delayed job was removed before its time: it will never be published",
            ).model_dump(),
        )

    def _cancel_published(self, timer: Timer, by: str | None) -> CancelAnswer:
        """The scheduler published it (or is publishing it) after we found its timer."""
        if self.ledger is None or not self.ledger.records(timer.job_type):
            return self._no_ledger(timer.job_id, timer.job_type)
        # Cancelled run items written before the message arrives stop it all the same.
        queues = self.topology.queues_receiving(timer.job_type)
        return self._cancel_on(timer.job_id, timer.job_type, dict.fromkeys(queues, "queued"), by)

    def _cancel_queued(self, record: JobRecord, by: str | None) -> CancelAnswer:
        states = {queue: str(status.state) for queue, status in record.queues.items()}
        if record.queued_at is None and record.type in self.topology.job_types:
            # The producer's record is missing (its write failed): every queue the type
            # fans out to, not only those a worker has written to.
            for queue in self.topology.queues_receiving(record.type):
                states.setdefault(queue, "queued")
        return self._cancel_on(record.id, record.type, states, by)

    def _cancel_on(
        self, job_id: str, job_type: str, states: dict[str, str], by: str | None
    ) -> CancelAnswer:
        """Cancel on the queues in ``states`` (queue → state read) where it has not started."""
        assert self.ledger is not None
        # The read is consistent; the conditional writes settle any race with a worker.
        # A queue still shown waiting (scheduled) was published since its timer went.
        open_queues = sorted(q for q, s in states.items() if s in CANCELLABLE | WAITING_STATES)
        try:
            results = self.ledger.cancel(job_id, job_type, open_queues, by=by)
        except LedgerUnavailableError as exc:
            log.warning("job cancel failed", job_id=job_id, store="ledger", reason=str(exc))
            raise _ledger_unavailable(exc) from None
        final = {**states, **{q: state for q, (state, _) in results.items()}}
        now = sorted(q for q, (_, cancelled) in results.items() if cancelled)
        overall = overall_state(list(final.values()))
        queues = dict(sorted(final.items()))
        if "cancelled" not in final.values():
            detail = (
                f"job '{job_id}' was not cancelled: it is {overall} and a job that has"
                " started is not interrupted"
                if final
                else f"job '{job_id}' was not cancelled: it reached no queue"
            )
            log.info("job cancel refused", job_id=job_id, state=overall)
            return CancelAnswer(
                409,
                NotCancelled(detail=detail, id=job_id, state=overall, queues=queues).model_dump(),
            )
        started = [f"{q} ({s})" for q, s in queues.items() if s != "cancelled"]
        if started:
            detail = (
                "cancelled on the queues where it had not started; not on "
                + ", ".join(started)
                + ", where it had (a started job is not interrupted)"
            )
        else:
            detail = "cancelled: a worker that receives it deletes it without running it"
        log.info("job cancelled", job_id=job_id, job_type=job_type, queues=now, was="queued")
        return CancelAnswer(
            200,
            JobCancelled(
                id=job_id, type=job_type, state=overall, queues=queues, detail=detail
            ).model_dump(),
        )


def cancel_router(topology: Topology, guard: Guard) -> APIRouter:
    """A router serving ``DELETE /v1/jobs/{job_id}`` for ``topology``."""
    router = APIRouter(tags=["status"])
    canceller = Canceller(topology, ledger_for(topology), TimerStore(timers_table_name(topology)))

    @router.delete(
        "/v1/jobs/{job_id}",
        response_model=JobCancelled,
        responses=_RESPONSES,
        summary="Cancel a job that has not started",
        operation_id="cancel_job",
    )
    def cancel_job(
        job_id: Annotated[str, JOB_ID],
        key: Annotated[ApiKey | None, Depends(guard.authenticate)],
    ) -> JSONResponse:
        """Cancel the job: a delayed job is never published; a queued one is deleted unrun.

        A job that is running or finished is not interrupted (409 with its state).
        Only the API key that enqueued the job, or an ``admin`` key, may cancel it.
        """
        # A sync endpoint: FastAPI runs it in the threadpool (boto3 blocks).
        answer = canceller.cancel(
            job_id, lambda owner: guard.may_read(key, owner), guard.key_name(key)
        )
        return answer.response()

    return router
