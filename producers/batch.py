"""``POST /v1/jobs``: up to 500 jobs of mixed types in one request, one result per job.

The request is validated as a whole (a JSON object with 1..500 ``jobs``, each with
a ``type``); each job's payload is validated against its own type's model, so an
invalid job is a 422 *result* and the other jobs still go out. The HTTP status
says how many were accepted:

- 202: every job was accepted (SNS has it; or had it, for a repeated idempotency key);
- 207: some were, some were not (see each result's ``status``);
- none were: the status all failures share (422, 403, 409, 413, 503), else
  503 when any failure is worth retrying as is (a 503), else 422.

A 503 (overall, or in any result) comes with ``Retry-After``.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infra.logs import get_logger
from infra.validation import errors_line
from producers.auth import ApiKey
from producers.delay import DelayError, due_time
from producers.enqueue import Enqueuer, Job, Outcome, message_group_id
from producers.guard import Guard
from producers.http import ENQUEUE_ERRORS, IDEMPOTENCY_HEADER, TRACE_HEADER, valid_traceparent
from producers.metrics import ApiMetrics

log = get_logger("conveyor.api")

#: The most jobs one request may carry.
MAX_BATCH_JOBS = 500


class BatchJob(BaseModel):
    """One job of a batch."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(min_length=1, max_length=100, description="The job type.")]
    data: dict[str, Any] = Field(
        default_factory=dict, description="The payload, validated against the type's model."
    )
    idempotency_key: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=255,
            description="The same key within the retention window is the same job.",
        ),
    ] = None
    message_group_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=128,
            pattern=r"^[\w!-/:-@\[-`{-~]+$",
            description="FIFO topics: the ordering group (default: the type's declared field).",
        ),
    ] = None
    delay_s: float | None = Field(
        default=None,
        description="Publish the job this many seconds from now (0 up to the API's"
        " scheduling.max_delay_s). Not with not_before.",
    )
    not_before: datetime | None = Field(
        default=None,
        description="Publish the job at this time (RFC 3339 with a UTC offset); a time"
        " that has passed is now. Not with delay_s.",
    )


class BatchRequest(BaseModel):
    """Jobs to enqueue, of any types."""

    model_config = ConfigDict(extra="forbid")

    jobs: Annotated[list[BatchJob], Field(min_length=1, max_length=MAX_BATCH_JOBS)]


class BatchItemResult(BaseModel):
    """What happened to one job of the batch, by its ``index`` in the request."""

    index: int
    status: int = Field(description="202 accepted, else why not (403, 409, 413, 422, 503).")
    type: str | None = None
    id: str | None = Field(default=None, description="The job id (accepted jobs).")
    status_url: str | None = None
    queues: list[str] | None = None
    duplicate: bool | None = Field(
        default=None,
        description="Accepted earlier under the same idempotency key; nothing published now.",
    )
    due_at: datetime | None = Field(
        default=None,
        description="A delayed job: stored, to be published at this time (UTC).",
    )
    error: str | None = Field(default=None, description="Why the job was not accepted.")
    retry_after_s: int | None = None


class BatchResult(BaseModel):
    """One result per job, in request order."""

    accepted: int
    rejected: int
    results: list[BatchItemResult]


def item_result(outcome: Outcome) -> BatchItemResult:
    """The JSON result of one outcome."""
    if outcome.accepted:
        assert outcome.job_id is not None
        return BatchItemResult(
            index=outcome.index,
            status=202,
            type=outcome.job_type,
            id=outcome.job_id,
            status_url=f"/v1/jobs/{outcome.job_id}",
            queues=outcome.queues,
            duplicate=True if outcome.duplicate else None,
            due_at=outcome.due_at,
        )
    return BatchItemResult(
        index=outcome.index,
        status=outcome.status,
        type=outcome.job_type,
        error=outcome.error,
        retry_after_s=outcome.retry_after_s,
    )


def overall_status(outcomes: list[Outcome]) -> int:
    """202 all accepted, 207 some, else the shared failure status (see the module doc)."""
    accepted = sum(1 for o in outcomes if o.accepted)
    if accepted == len(outcomes):
        return 202
    if accepted:
        return 207
    statuses = {o.status for o in outcomes}
    if len(statuses) == 1:
        return statuses.pop()
    return 503 if 503 in statuses else 422


def retry_after_s(outcomes: list[Outcome]) -> int | None:
    """The longest Retry-After among results that are worth retrying (503, 409 in progress)."""
    hints = [o.retry_after_s for o in outcomes if o.retry_after_s is not None and not o.accepted]
    return max(hints) if hints else None


def render(outcomes: list[Outcome]) -> tuple[int, BatchResult]:
    """The HTTP status and body of a batch answer."""
    results = [item_result(o) for o in outcomes]
    accepted = sum(1 for o in outcomes if o.accepted)
    body = BatchResult(accepted=accepted, rejected=len(outcomes) - accepted, results=results)
    return overall_status(outcomes), body


def add_batch_route(
    app: FastAPI,
    enqueuer: Enqueuer,
    guard: Guard,
    models: Mapping[str, type[BaseModel]],
    metrics: ApiMetrics,
    *,
    max_delay_s: float,
) -> None:
    """Serve ``POST /v1/jobs`` on ``app``; a job's delay may be up to ``max_delay_s``."""
    topology = enqueuer.topology
    known = ", ".join(sorted(models))

    def validate(
        index: int, item: BatchJob, key: ApiKey | None, header_key: str | None
    ) -> Job | Outcome:
        model = models.get(item.type)
        if model is None:
            return Outcome(
                index,
                422,
                item.type,
                "unknown_type",
                error=f"unknown job type '{item.type}' (known: {known})",
            )
        if key is not None and not key.may_enqueue(item.type):
            return Outcome(
                index,
                403,
                item.type,
                "forbidden",
                error=f"API key '{key.name}' may not enqueue {item.type} jobs",
            )
        try:
            data = model.model_validate(item.data).model_dump(mode="json")
        except ValidationError as exc:
            # One line: ``data.width_px: Input should be …``.
            error = errors_line(exc, prefix="data.")
            return Outcome(index, 422, item.type, "invalid", error=error)
        try:
            due = due_time(
                item.delay_s, item.not_before, now=datetime.now(UTC), max_delay_s=max_delay_s
            )
        except DelayError as exc:
            return Outcome(index, 422, item.type, "invalid", error=str(exc))
        item_key = item.idempotency_key
        if item_key is None and header_key is not None:
            item_key = f"{header_key}#{index}"
        group = message_group_id(topology, item.type, data, item.message_group_id)
        return Job(index, item.type, data, item_key, group, due)

    @app.post(
        "/v1/jobs",
        status_code=202,
        response_model=BatchResult,
        responses={
            **ENQUEUE_ERRORS,
            207: {"model": BatchResult, "description": "Some jobs were accepted: see results."},
        },
        summary="Enqueue up to 500 jobs of any types",
        tags=["batch"],
        operation_id="enqueue_batch",
    )
    def enqueue_batch(
        request: BatchRequest,
        key: Annotated[ApiKey | None, Depends(guard.authenticate)],
        idempotency_key: Annotated[str | None, IDEMPOTENCY_HEADER] = None,
        traceparent: Annotated[str | None, TRACE_HEADER] = None,
    ) -> JSONResponse:
        """Each job is validated against its type's model and gets its own result.

        An ``Idempotency-Key`` header applies to the whole request: job *i* without its
        own ``idempotency_key`` gets ``<header>#<i>``, so repeating the request
        publishes nothing new. A job with ``delay_s`` or ``not_before`` is stored and
        published when due (its result carries ``due_at``).
        """
        # A sync function: FastAPI runs it in its threadpool (boto3 blocks).
        metrics.batch(len(request.jobs))
        guard.rate_limit(key, len(request.jobs))
        outcomes: dict[int, Outcome] = {}
        jobs: list[Job] = []
        for index, item in enumerate(request.jobs):
            checked = validate(index, item, key, idempotency_key)
            if isinstance(checked, Outcome):
                outcomes[index] = checked
                metrics.outcome(checked)
            else:
                jobs.append(checked)
        trace = valid_traceparent(traceparent)
        for outcome in enqueuer.run(
            jobs, traceparent=trace, scope=guard.scope(key), key_name=guard.key_name(key)
        ):
            outcomes[outcome.index] = outcome
        ordered = [outcomes[i] for i in range(len(request.jobs))]
        status, body = render(ordered)
        log.info(
            "batch answered",
            status=status,
            jobs=len(ordered),
            accepted=body.accepted,
            rejected=body.rejected,
            **({"api_key": key.name} if key is not None else {}),
        )
        retry = retry_after_s(ordered)
        headers = {"Retry-After": str(retry)} if retry is not None and status != 202 else {}
        return JSONResponse(
            body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers
        )
