"""``GET /v1/jobs/{job_id}``: a job's status from the job ledger.

200 with the record (overall state, and per queue: state, attempt, timestamps,
next attempt time, dead-letter reason); 404 when nothing is recorded for the id
(unknown, or its job type does not set ``ledger: true``); 503 with Retry-After
when the ledger cannot be read.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from infra.ledger import JobRecord, LedgerUnavailableError, ledger_for
from infra.logs import get_logger
from infra.topology import Topology

#: Seconds a client should wait before asking again after a 503.
RETRY_AFTER_UNAVAILABLE_S = 5

log = get_logger("conveyor.api")


class StatusError(BaseModel):
    """Why no status is shown."""

    detail: str


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {
        "model": StatusError,
        "description": "Nothing is recorded for this id: unknown, or its job type does not"
        " record status (`ledger: true` in queues.yaml).",
    },
    503: {
        "model": StatusError,
        "description": "The job ledger cannot be read: retry after Retry-After seconds.",
    },
}


def status_router(topology: Topology) -> APIRouter:
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
    async def job_status(job_id: str) -> JobRecord:
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
                f"job status unavailable: {exc}",
                headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
            ) from None
        if record is None:
            raise HTTPException(
                404,
                f"no status recorded for job '{job_id}' (unknown id, or a job type that does"
                f" not record status; recorded: {recorded})",
            )
        return record

    return router
