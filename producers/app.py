"""The producer HTTP API: one ``POST /v1/jobs/<job type>`` per job type of queues.yaml.

Each route's body is the job type's payload model, so FastAPI validates it (422
with field errors) and the OpenAPI document at ``/openapi.json`` (``/docs``)
describes every job type. A job is answered 202 only once SNS accepted it.
"""

import inspect
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from infra.envelope import make_envelope
from infra.logs import get_logger
from infra.topology import Topology, payload_model
from producers.limits import DEFAULT_MAX_BODY_BYTES, BodySizeLimit
from producers.publisher import RETRY_AFTER_UNAVAILABLE_S, Publisher, PublishError

#: The CloudEvents ``source`` of jobs enqueued through this API.
SOURCE = "/conveyor/api"

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
# W3C trace context: an all-zero trace or parent id is invalid, as is version ff.
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16

log = get_logger("conveyor.api")


class JobAccepted(BaseModel):
    """A job SNS accepted: it is on its way to every queue listed."""

    id: str = Field(description="The job id (stable across redeliveries and redrives).")
    type: str = Field(description="The job type.")
    status_url: str = Field(description="Where the job's status will be (GET).")
    queues: list[str] = Field(description="The declared queues the job fans out to.")


class ErrorDetail(BaseModel):
    """Why the request was refused."""

    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorDetail, "description": "The body or the resulting message is too large."},
    503: {
        "model": ErrorDetail,
        "description": "Not published (SNS unreachable or throttling, topic missing):"
        " retry after Retry-After seconds.",
    },
}


def valid_traceparent(value: str | None) -> str | None:
    """``value`` if it is a usable W3C ``traceparent``, else None (a new trace is started)."""
    if value is None:
        return None
    value = value.strip().lower()
    if not _TRACEPARENT.match(value):
        return None
    version, trace_id, parent_id, _ = value.split("-")
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    return value


def _error(status_code: int, detail: str, retry_after_s: int | None = None) -> HTTPException:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return HTTPException(status_code, detail, headers=headers)


def create_app(topology: Topology, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """The producer API for ``topology``; request bodies above ``max_body_bytes`` get 413.

    Imports every job type's payload model (run ``check_imports`` first for a
    readable error when one is missing).
    """
    app = FastAPI(
        title="Conveyor producer API",
        version="1",
        description="Enqueue jobs: each job type of queues.yaml has its own route and schema.",
    )
    app.add_middleware(BodySizeLimit, max_body_bytes=max_body_bytes)
    publisher = Publisher(topology)
    app.state.publisher = publisher
    known = ", ".join(sorted(topology.job_types))

    def enqueue(
        job_type: str, payload: BaseModel, idempotency_key: str | None, traceparent: str | None
    ) -> JSONResponse:
        # A sync function: FastAPI runs it in the threadpool, so blocking boto3
        # never stalls the event loop.
        envelope = make_envelope(
            job_type,
            payload.model_dump(mode="json"),
            source=SOURCE,
            traceparent=valid_traceparent(traceparent),
            idempotency_key=idempotency_key,
        )
        jlog = log.bind(
            job_id=envelope.id,
            job_type=job_type,
            topic=topology.job_types[job_type].topic,
            trace_id=envelope.trace_id,
        )
        try:
            published = publisher.publish(envelope)
        except PublishError as exc:
            if exc.unexpected:
                jlog.exception("job not published", reason=exc.detail)
            else:
                jlog.warning(
                    "job not published", reason=exc.detail, error=repr(exc.__cause__ or exc)
                )
            detail = f"job not published: {exc.detail}"
            raise _error(exc.status_code, detail, exc.retry_after_s) from None
        except Exception:  # noqa: BLE001 - a job that may not be published is never a 500 or a 202
            jlog.exception("job not published", reason="unexpected error")
            raise _error(
                503, "job not published: unexpected error", RETRY_AFTER_UNAVAILABLE_S
            ) from None
        queues = topology.queues_receiving(job_type)
        status_url = f"/v1/jobs/{envelope.id}"
        jlog.info(
            "job accepted",
            queues=queues,
            message_id=published.message_id,
            size_bytes=published.size_bytes,
            **({"idempotency_key": idempotency_key} if idempotency_key else {}),
        )
        accepted = JobAccepted(id=envelope.id, type=job_type, status_url=status_url, queues=queues)
        return JSONResponse(
            accepted.model_dump(), status_code=202, headers={"Location": status_url}
        )

    for job_type in sorted(topology.job_types):
        model = payload_model(topology, job_type)
        declared = topology.job_types[job_type]
        app.add_api_route(
            f"/v1/jobs/{job_type}",
            _route(job_type, model, enqueue),
            methods=["POST"],
            status_code=202,
            response_model=JobAccepted,
            responses=_ERRORS,
            summary=f"Enqueue a {job_type} job",
            description=declared.description or inspect.getdoc(model) or "",
            operation_id=f"enqueue_{re.sub(r'[^a-z0-9]+', '_', job_type)}",
            tags=[f"topic: {declared.topic}"],
        )

    @app.post("/v1/jobs/{job_type}", include_in_schema=False)
    async def unknown_job_type(job_type: str) -> None:
        raise HTTPException(404, f"unknown job type '{job_type}' (known: {known})")

    @app.get("/v1/jobs/{job_id}", responses={404: {"model": ErrorDetail}}, tags=["status"])
    async def job_status(job_id: str) -> None:
        """The status of a job (needs the job ledger, which is not enabled yet)."""
        raise HTTPException(
            404, f"no status recorded for job '{job_id}' (the job ledger is not enabled)"
        )

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorDetail}})
    async def readyz() -> dict[str, Any]:
        """SNS answers and every declared topic exists."""
        try:
            topics = await run_in_threadpool(publisher.check_topics)
        except PublishError as exc:
            log.warning("not ready", reason=exc.detail, error=repr(exc.__cause__ or exc))
            raise _error(503, f"not ready: {exc.detail}", exc.retry_after_s) from None
        return {"status": "ready", "topics": topics}

    return app


def _route(
    job_type: str,
    model: type[BaseModel],
    enqueue: Callable[[str, BaseModel, str | None, str | None], JSONResponse],
) -> Callable[..., JSONResponse]:
    """The endpoint of one job type, its body typed as ``model`` for FastAPI and OpenAPI."""

    def endpoint(
        payload: BaseModel, idempotency_key: str | None, traceparent: str | None
    ) -> JSONResponse:
        return enqueue(job_type, payload, idempotency_key, traceparent)

    # The payload's type is only known at runtime: give FastAPI the signature it reads.
    keyword = inspect.Parameter.KEYWORD_ONLY
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("payload", keyword, annotation=model),
            inspect.Parameter(
                "idempotency_key",
                keyword,
                default=None,
                annotation=Annotated[
                    str | None,
                    Header(
                        alias="Idempotency-Key",
                        min_length=1,
                        max_length=255,
                        description="Recorded on the job as its idempotency key.",
                    ),
                ],
            ),
            inspect.Parameter(
                "traceparent",
                keyword,
                default=None,
                annotation=Annotated[
                    str | None,
                    Header(description="W3C trace context; a new trace is started if absent."),
                ],
            ),
        ],
        return_annotation=JSONResponse,
    )
    endpoint.__name__ = f"enqueue_{re.sub(r'[^a-z0-9]+', '_', job_type)}"
    return endpoint
