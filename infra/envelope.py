"""The wire contract: a job is a CloudEvents 1.0 JSON document (structured mode).

Producers and workers share nothing else. Any language or AWS service can
produce a job by publishing such a document to the job type's topic:

    {"specversion": "1.0", "id": "…", "type": "image.resize", "source": "/conveyor/api",
     "time": "2026-11-23T10:00:00Z", "datacontenttype": "application/json",
     "conveyorversion": 1, "data": {…}, "traceparent": "00-…"}

``conveyorversion`` (a CloudEvents extension) versions Conveyor's use of the
format; a worker refuses a version it does not understand, and the job goes to
the dead-letter queue with that reason instead of being guessed at. JSON only:
never pickle.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infra.errors import ConveyorError
from infra.validation import errors_line

#: The envelope version this code writes and the highest it reads.
ENVELOPE_VERSION = 1
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


class EnvelopeError(ConveyorError, ValueError):
    """A message body that is not a job this code can run; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class Envelope(BaseModel):
    """A job on the wire."""

    # CloudEvents lets producers add extension attributes: keep them, don't fail.
    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=100)
    source: str = Field(default="/conveyor", min_length=1)
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    conveyorversion: int = ENVELOPE_VERSION
    data: Any = None
    #: W3C trace context of the request that created the job.
    traceparent: str | None = None
    idempotencykey: str | None = None
    #: Claim check: where the payload is when it was too large to travel inline.
    dataref: str | None = None

    @field_validator("traceparent")
    @classmethod
    def _w3c_traceparent(cls, value: str | None) -> str | None:
        if value is not None and not _TRACEPARENT.match(value):
            raise ValueError(
                "traceparent is not a W3C trace context ('00-<32 hex>-<16 hex>-<2 hex>')"
            )
        return value

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @property
    def trace_id(self) -> str | None:
        """The 32-hex trace id inside ``traceparent``, for logs."""
        return self.traceparent.split("-")[1] if self.traceparent else None


def new_job_id() -> str:
    """A fresh job id (a random UUID; stable across redeliveries and redrives)."""
    return str(uuid.uuid4())


def new_traceparent() -> str:
    """A new W3C ``traceparent`` for a job that arrived without one."""
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"


def make_envelope(
    job_type: str,
    data: Any,
    *,
    job_id: str | None = None,
    source: str = "/conveyor",
    traceparent: str | None = None,
    idempotency_key: str | None = None,
) -> Envelope:
    """A new envelope for ``data`` (already validated against the job type's model)."""
    return Envelope(
        id=job_id or new_job_id(),
        type=job_type,
        source=source,
        time=datetime.now(UTC),
        data=data,
        traceparent=traceparent or new_traceparent(),
        idempotencykey=idempotency_key,
    )


def encode(envelope: Envelope) -> str:
    """The JSON text of ``envelope`` (compact; unset optional fields omitted)."""
    return envelope.model_dump_json(exclude_none=True)


def decode(body: str | bytes) -> Envelope:
    """Parse and validate a message body; raise :class:`EnvelopeError` with a reason code.

    Reasons: ``invalid_json``, ``not_an_envelope``, ``unsupported_version``,
    ``invalid_envelope``.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError("invalid_json", f"the message body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or "specversion" not in doc:
        raise EnvelopeError(
            "not_an_envelope", "the message body is not a CloudEvents document (no specversion)"
        )
    version = doc.get("conveyorversion", ENVELOPE_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > ENVELOPE_VERSION:
        raise EnvelopeError(
            "unsupported_version",
            f"envelope version {version!r} is not supported (this worker reads up to"
            f" {ENVELOPE_VERSION})",
        )
    try:
        return Envelope.model_validate(doc)
    except ValidationError as exc:
        fields = errors_line(exc, whole="envelope")
        raise EnvelopeError("invalid_envelope", f"invalid envelope: {fields}") from None
