"""The producer HTTP API: ``POST /v1/jobs/<job type>`` per job type, ``POST /v1/jobs`` for batches.

Each single-job route's body is the job type's payload model, so FastAPI validates
it (422 with field errors) and the OpenAPI document at ``/openapi.json`` (``/docs``)
describes every job type. A job is answered 202 only once SNS accepted it (or
accepted it earlier, for a repeated idempotency key). The pipeline is
:mod:`producers.enqueue`; batches :mod:`producers.batch`; keys :mod:`producers.auth`.
"""

import inspect
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from infra import tracing
from infra.aws.names import IDEMPOTENCY_TABLE, timers_table_name
from infra.claim_check import claim_check_for
from infra.ledger import ledger_for
from infra.settings import ApiSettings, SchedulingSettings, load_settings
from infra.timers import TimerStore
from infra.topology import Topology, payload_model
from producers.auth import ApiKey
from producers.batch import add_batch_route
from producers.cancel import cancel_router
from producers.delay import DelayError, due_time
from producers.enqueue import (
    SOURCE,
    Enqueuer,
    Job,
    Outcome,
    message_group_id,
)
from producers.gate import ApiKeyGate
from producers.guard import Guard
from producers.http import (
    ENQUEUE_ERRORS,
    GROUP_HEADER,
    IDEMPOTENCY_HEADER,
    TRACE_HEADER,
    ErrorDetail,
    error,
    valid_traceparent,
)
from producers.idempotency import IdempotencyStore
from producers.limits import BodySizeLimit, default_max_body_bytes
from producers.metrics import CONTENT_TYPE, ApiMetrics, exposition
from producers.publisher import Publisher, PublishError
from producers.ready import CachedReadiness
from producers.status import status_router
from producers.traced import TraceRequests

__all__ = ["SOURCE", "JobAccepted", "create_app", "valid_traceparent"]


class JobAccepted(BaseModel):
    """A job SNS accepted: it is on its way to every queue listed."""

    id: str = Field(description="The job id (stable across redeliveries and redrives).")
    type: str = Field(description="The job type.")
    status_url: str = Field(description="Where the job's status is (GET).")
    queues: list[str] = Field(description="The declared queues the job fans out to.")
    duplicate: bool = Field(
        False,
        description="An earlier request with this Idempotency-Key was accepted: this answer"
        " replays it and nothing was published now.",
    )
    due_at: datetime | None = Field(
        None,
        description="A delayed job (delay_s or not_before in the future): stored, to be"
        " published at this time (UTC). Absent: published now.",
    )


def create_app(
    topology: Topology,
    *,
    max_body_bytes: int | None = None,
    keys: Sequence[ApiKey] | None = None,
    settings: ApiSettings | None = None,
    scheduling: SchedulingSettings | None = None,
) -> FastAPI:
    """The producer API for ``topology``.

    ``keys``: the accepted API keys; None turns authentication off (``conveyor api``
    decides, see :mod:`conveyor.cli.api`). Payloads above ``payloads.max_bytes``
    get 413, as do request bodies above ``max_body_bytes`` (default: that plus
    room for a batch's framing). Large payloads go through S3 (the claim check);
    accepted jobs of types with ``ledger: true`` are recorded as queued, with the
    name of the key that enqueued them (only that key, or an ``admin`` one, reads
    their status). The API key is checked before the body is read
    (:mod:`producers.gate`), the body's size and read time are limited before it is
    parsed (:mod:`producers.limits`). Delayed jobs (``delay_s``/``not_before``, up to
    ``scheduling.max_delay_s``) are stored in the timer table. Imports
    every job type's payload model (run ``check_imports`` first for a readable error).
    """
    settings = settings or ApiSettings()
    scheduling = scheduling or load_settings().scheduling
    max_payload_bytes = topology.payloads.max_bytes

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        publisher.close()
        idempotency.close()
        enqueuer.close()

    app = FastAPI(
        **_NATIVE_TELEMETRY_OFF,
        lifespan=lifespan,
        title="Conveyor producer API",
        version="1",
        description="Enqueue jobs: each job type of queues.yaml has its own route and"
        " schema; POST /v1/jobs takes up to 500 jobs of any types.",
    )
    metrics = ApiMetrics(topology.job_types)
    guard = Guard(keys, settings, metrics)
    # The last added runs first: the key is checked before the body is read at all.
    app.add_middleware(
        BodySizeLimit,
        max_body_bytes=max_body_bytes or default_max_body_bytes(topology),
        body_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(
        ApiKeyGate, ring=guard.ring, on_rejected=lambda: metrics.request_rejected("unauthorized")
    )
    if tracing.enabled():  # outermost: the span covers the key check and the body's read
        tracing.configure("conveyor-api")
        app.add_middleware(TraceRequests)
    timeouts = {
        "connect_timeout_s": settings.aws_connect_timeout_s,
        "read_timeout_s": settings.aws_read_timeout_s,
    }
    publisher = Publisher(topology, threads=settings.publish_threads, **timeouts)
    publisher.on_call = metrics.publish_call
    idempotency = IdempotencyStore(
        topology.resource_name(IDEMPOTENCY_TABLE),
        retention_s=settings.idempotency_retention_s,
        lease_s=settings.idempotency_lease_s,
        **timeouts,
    )
    enqueuer = Enqueuer(
        topology,
        publisher,
        idempotency=idempotency,
        offloader=claim_check_for(topology),
        recorder=ledger_for(topology),
        max_payload_bytes=max_payload_bytes,
        observe=metrics.outcome,
        timers=TimerStore(
            timers_table_name(topology), retention_s=scheduling.timer_retention_s, **timeouts
        ),
    )
    app.state.publisher = publisher
    app.state.enqueuer = enqueuer
    models = {name: payload_model(topology, name) for name in topology.job_types}
    _add_job_routes(app, enqueuer, guard, models, scheduling.max_delay_s)
    add_batch_route(app, enqueuer, guard, models, metrics, max_delay_s=scheduling.max_delay_s)
    readiness = CachedReadiness(publisher.check_topics, settings.ready_cache_s)
    _add_status_routes(app, guard, readiness, status_router(topology, guard))
    app.include_router(cancel_router(topology, guard), dependencies=[Depends(guard.authenticate)])

    @app.exception_handler(RequestValidationError)
    async def count_invalid(request: Request, exc: RequestValidationError) -> Response:
        job_type = request.url.path.removeprefix("/v1/jobs/")
        if request.method == "POST" and job_type in topology.job_types:
            metrics.outcome(Outcome(0, 422, job_type, "invalid"))
        return await request_validation_exception_handler(request, exc)

    return app


#: FastAPI (0.165 on) emits its own spans once an SDK tracer provider exists: the
#: request span is producers.traced's (one server span, the publish spans its
#: children, on every FastAPI version this accepts), so FastAPI's is turned off.
_NATIVE_TELEMETRY_OFF: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def _add_job_routes(
    app: FastAPI,
    enqueuer: Enqueuer,
    guard: Guard,
    models: dict[str, type[BaseModel]],
    max_delay_s: float,
) -> None:
    """``POST /v1/jobs/<job type>`` for every job type, and a 404 for any other type."""
    topology = enqueuer.topology
    known = ", ".join(sorted(topology.job_types))

    # -- single job ---------------------------------------------------------------------

    def enqueue_one(
        job_type: str, payload: BaseModel, key: ApiKey | None, headers: _Headers
    ) -> JSONResponse:
        # A sync function: FastAPI runs it in the threadpool, so blocking boto3
        # never stalls the event loop.
        try:
            due = due_time(
                headers.delay_s, headers.not_before, now=datetime.now(UTC), max_delay_s=max_delay_s
            )
        except DelayError as exc:
            raise error(422, str(exc)) from None
        guard.rate_limit(key, 1)
        data = payload.model_dump(mode="json")
        group = message_group_id(topology, job_type, data, headers.message_group_id)
        job = Job(0, job_type, data, headers.idempotency_key, group, due)
        trace = valid_traceparent(headers.traceparent)
        [outcome] = enqueuer.run(
            [job], traceparent=trace, scope=guard.scope(key), key_name=guard.key_name(key)
        )
        if not outcome.accepted:
            raise error(outcome.status, outcome.error or "not accepted", outcome.retry_after_s)
        assert outcome.job_id is not None
        status_url = f"/v1/jobs/{outcome.job_id}"
        accepted = JobAccepted(
            id=outcome.job_id,
            type=job_type,
            status_url=status_url,
            queues=outcome.queues,
            duplicate=outcome.duplicate,
            due_at=outcome.due_at,
        )
        return JSONResponse(
            accepted.model_dump(mode="json", exclude_none=True),
            status_code=202,
            headers={"Location": status_url},
        )

    for job_type in sorted(topology.job_types):
        declared = topology.job_types[job_type]
        app.add_api_route(
            f"/v1/jobs/{job_type}",
            _route(job_type, models[job_type], enqueue_one, guard.authorizer(job_type)),
            methods=["POST"],
            status_code=202,
            response_model=JobAccepted,
            responses=ENQUEUE_ERRORS,
            summary=f"Enqueue a {job_type} job",
            description=declared.description or inspect.getdoc(models[job_type]) or "",
            operation_id=f"enqueue_{re.sub(r'[^a-z0-9]+', '_', job_type)}",
            tags=[f"topic: {declared.topic}"],
        )

    @app.post("/v1/jobs/{job_type}", include_in_schema=False)
    async def unknown_job_type(
        job_type: str, _key: Annotated[ApiKey | None, Depends(guard.authenticate)]
    ) -> None:
        raise HTTPException(404, f"unknown job type '{job_type}' (known: {known})")


def _add_status_routes(
    app: FastAPI, guard: Guard, readiness: CachedReadiness, status: APIRouter
) -> None:
    """``GET /v1/jobs/<id>`` (behind auth), ``/healthz``, ``/readyz``, ``/metrics`` (public)."""

    # -- status, health, metrics ------------------------------------------------------------

    app.include_router(status, dependencies=[Depends(guard.authenticate)])

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorDetail}})
    async def readyz() -> dict[str, Any]:
        """SNS answers and every declared topic exists (checked at most once per
        ``CONVEYOR_API_READY_CACHE_S`` per process)."""
        try:
            topics = await readiness.check()
        except PublishError as exc:
            raise error(503, f"not ready: {exc.detail}", exc.retry_after_s) from None
        return {"status": "ready", "topics": topics}

    @app.get("/metrics", tags=["health"], response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus metrics: jobs accepted/rejected, publish latency, batch sizes."""
        return Response(exposition(), media_type=CONTENT_TYPE)


@dataclass(frozen=True)
class _Headers:
    """What a single-job request says besides its body: headers and query parameters."""

    idempotency_key: str | None
    traceparent: str | None
    message_group_id: str | None
    delay_s: float | None = None
    not_before: datetime | None = None


#: The single-job route's delay: query parameters (its body is the payload itself).
DELAY_QUERY = Query(
    description="Publish the job this many seconds from now (0 up to"
    " scheduling.max_delay_s; 422 above it). Not with not_before.",
)
NOT_BEFORE_QUERY = Query(
    description="Publish the job at this time: RFC 3339 with a UTC offset (URL-encode a"
    " `+` as %2B); a time that has passed is now. Not with delay_s.",
)


def _route(
    job_type: str,
    model: type[BaseModel],
    enqueue: Callable[..., JSONResponse],
    authorize: Callable[..., ApiKey | None],
) -> Callable[..., JSONResponse]:
    """The endpoint of one job type, its body typed as ``model`` for FastAPI and OpenAPI."""

    def endpoint(
        payload: BaseModel,
        key: ApiKey | None,
        idempotency_key: str | None,
        traceparent: str | None,
        group_id: str | None,
        *,
        delay_s: float | None = None,
        not_before: datetime | None = None,
    ) -> JSONResponse:
        headers = _Headers(idempotency_key, traceparent, group_id, delay_s, not_before)
        return enqueue(job_type, payload, key, headers)

    # The payload's type is only known at runtime: give FastAPI the signature it reads.
    keyword = inspect.Parameter.KEYWORD_ONLY
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("payload", keyword, annotation=model),
            inspect.Parameter(
                "key", keyword, annotation=Annotated[ApiKey | None, Depends(authorize)]
            ),
            inspect.Parameter(
                "idempotency_key",
                keyword,
                default=None,
                annotation=Annotated[str | None, IDEMPOTENCY_HEADER],
            ),
            inspect.Parameter(
                "traceparent",
                keyword,
                default=None,
                annotation=Annotated[str | None, TRACE_HEADER],
            ),
            inspect.Parameter(
                "group_id",
                keyword,
                default=None,
                annotation=Annotated[str | None, GROUP_HEADER],
            ),
            inspect.Parameter(
                "delay_s", keyword, default=None, annotation=Annotated[float | None, DELAY_QUERY]
            ),
            inspect.Parameter(
                "not_before",
                keyword,
                default=None,
                annotation=Annotated[datetime | None, NOT_BEFORE_QUERY],
            ),
        ],
        return_annotation=JSONResponse,
    )
    endpoint.__name__ = f"enqueue_{re.sub(r'[^a-z0-9]+', '_', job_type)}"
    return endpoint
