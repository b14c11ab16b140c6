"""``GET /v1/jobs/{job_id}``: a job's status from the job ledger.

200 with the record (overall state, and per queue: state, attempt, timestamps,
next attempt time, dead-letter reason); 404 when nothing is recorded for the id
(unknown, or its job type does not set ``ledger: true``) and when the job was
enqueued by another API key (only that key and ``admin`` keys see it, so ids
cannot be probed); 422 for an id no job can have (empty, longer than 128
characters, or not printable ASCII); 503 with Retry-After when the ledger cannot
be read — its body names no table (the log does).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from infra.aws.errors import is_table_missing
from infra.ledger import MAX_JOB_ID_LEN, JobRecord, LedgerUnavailableError, ledger_for
from infra.logs import get_logger
from infra.topology import Topology
from producers.auth import ApiKey
from producers.guard import Guard

#: Seconds a client should wait before asking again after a 503.
RETRY_AFTER_UNAVAILABLE_S = 5

log = get_logger("conveyor.api")


class StatusError(BaseModel):
    """Why no status is shown."""

    detail: str


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {
        "model": StatusError,
        "description": "Nothing is recorded for this id: unknown, its job type does not"
        " record status (`ledger: true` in queues.yaml), or another API key enqueued it.",
    },
    503: {
        "model": StatusError,
        "description": "The job ledger cannot be read: retry after Retry-After seconds.",
    },
}


#: What a job id may be: printable ASCII without spaces, as long as an envelope's id.
JOB_ID = PathParam(
    min_length=1,
    max_length=MAX_JOB_ID_LEN,
    pattern=r"^[!-~]+$",
    description="The job id (202's `id`).",
)


def _unavailable_detail(exc: LedgerUnavailableError) -> str:
    """What the client is told: no table name (the log has the full reason)."""
    if exc.__cause__ is not None and is_table_missing(exc.__cause__):
        return (
            "job status unavailable: the job ledger is not provisioned (run `conveyor infra apply`)"
        )
    return "job status unavailable: the job ledger cannot be read"


def status_router(topology: Topology, guard: Guard) -> APIRouter:
    """A router serving ``GET /v1/jobs/{job_id}`` for ``topology``'s ledger."""
    router = APIRouter(tags=["status"])
    ledger = ledger_for(topology)
    recorded = ", ".join(topology.ledger_job_types()) or "none"

    @router.get(
        "/v1/jobs/{job_id}",
        response_model=JobRecord,
        responses=_RESPONSES,
        summary="A job's status",
        operation_id="get_job_status",
    )
    async def job_status(
        job_id: Annotated[str, JOB_ID],
        key: Annotated[ApiKey | None, Depends(guard.authenticate)],
    ) -> JobRecord:
        """The job's status, overall and per queue.

        Per queue: queued → running (attempt n) → retrying (next attempt time) →
        … → succeeded or dead-lettered (with the reason).
        """
        if ledger is None:
            raise HTTPException(
                404,
                f"no status recorded for job '{job_id}': no job type records its status"
                " (set ledger: true on a job type in queues.yaml)",
            )
        try:
            record = await run_in_threadpool(ledger.get, job_id)
        except LedgerUnavailableError as exc:
            log.warning("job status unavailable", job_id=job_id, reason=str(exc))
            raise HTTPException(
                503,
                _unavailable_detail(exc),
                headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
            ) from None
        if record is not None and not guard.may_read(key, record.key_name):
            # Answered exactly like an unknown id: another key's ids cannot be probed.
            log.info("job status refused", job_id=job_id, api_key=key.name if key else None)
            record = None
        if record is None:
            raise HTTPException(
                404,
                f"no status recorded for job '{job_id}' (unknown id, or a job type that does"
                f" not record status; recorded: {recorded})",
            )
        return record

    return router
