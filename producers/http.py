"""What the routes share: error bodies, their OpenAPI descriptions, request headers."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Header, HTTPException
from pydantic import BaseModel

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
# W3C trace context: an all-zero trace or parent id is invalid, as is version ff.
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


class ErrorDetail(BaseModel):
    """Why the request was refused."""

    detail: str


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorDetail,
        "description": "No API key, or an unknown one (answered before the body is read).",
    },
    429: {"model": ErrorDetail, "description": "The key's rate limit: retry after Retry-After."},
}
ENQUEUE_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    403: {"model": ErrorDetail, "description": "The API key may not enqueue this job type."},
    408: {
        "model": ErrorDetail,
        "description": "The body did not arrive within CONVEYOR_API_BODY_TIMEOUT_S.",
    },
    409: {
        "model": ErrorDetail,
        "description": "The Idempotency-Key names another job, or its first request is"
        " still being processed.",
    },
    413: {"model": ErrorDetail, "description": "The body or the payload is too large."},
    503: {
        "model": ErrorDetail,
        "description": "Not published (SNS unreachable or throttling, topic missing):"
        " retry after Retry-After seconds.",
    },
}

IDEMPOTENCY_HEADER = Header(
    alias="Idempotency-Key",
    min_length=1,
    max_length=255,
    description="The same key within the retention window is the same job: the first"
    " job id is answered again and nothing is published.",
)
GROUP_HEADER = Header(
    alias="X-Message-Group-Id",
    min_length=1,
    max_length=128,
    pattern=r"^[\w!-/:-@\[-`{-~]+$",
    description="FIFO topics: the ordering group (default: the job type's declared field).",
)
TRACE_HEADER = Header(description="W3C trace context; a new trace is started if absent.")


def error(status_code: int, detail: str, retry_after_s: int | None = None) -> HTTPException:
    """An HTTP error, with ``Retry-After`` when given."""
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return HTTPException(status_code, detail, headers=headers)


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
