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

Conformance (CloudEvents 1.0, JSON format): only ``specversion``, ``id`` and ``type``
must be present (``source`` is required by the spec too; an event without one is
read as ``/conveyor``, which keeps older Conveyor messages readable); ``time``
(RFC 3339), ``datacontenttype`` (a media type), ``dataschema`` (a URI) and
``subject`` are optional and checked when present; extension attributes are kept.
``data_base64`` with a JSON content type (or none, which means JSON) is decoded
into ``data``; with any other content type the event is refused with
``unsupported_content_type`` (a job's payload is JSON). Conveyor itself always
writes ``time`` and ``datacontenttype``.

Decoding is bounded (:func:`load_json`): a body above :data:`MAX_BODY_BYTES` or
nested deeper than :data:`MAX_JSON_DEPTH` is refused before ``json.loads`` sees it,
because the standard library's decoder recurses once per level and raises
``RecursionError`` on a body about a thousand levels deep.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from infra.errors import ConveyorError
from infra.validation import errors_line

#: The envelope version this code writes and the highest it reads.
ENVELOPE_VERSION = 1
#: The largest message body decode reads, in bytes: SQS's largest message (1 MiB).
#: A larger body did not come through SQS; refusing it bounds what one message costs.
MAX_BODY_BYTES = 1024 * 1024
#: The deepest nesting of JSON arrays and objects decode reads (the envelope object
#: itself is level 1). Python's json module recurses once per level and fails with
#: RecursionError near 1,000 levels; no job payload needs more than a few dozen.
MAX_JSON_DEPTH = 100
#: The content type an event without ``datacontenttype`` has (CloudEvents JSON format).
JSON_CONTENT_TYPE = "application/json"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
# RFC 3339 date-time; an offset-less time is read as UTC (older Conveyor messages).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")
# RFC 2045 media type: type "/" subtype, then optional parameters.
_MT_NAME = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_MEDIA_TYPE = re.compile(rf"^{_MT_NAME}/{_MT_NAME}(\s*;.*)?$", re.DOTALL)
# What CloudEvents' JSON format treats as JSON data: application/json, text/json, */*+json.
_JSON_MEDIA_TYPE = re.compile(r"^(application|text)/([A-Za-z0-9.+-]+\+)?json\s*(;.*)?$", re.I)
# An absolute URI (RFC 3986 scheme ":" …), what CloudEvents requires of dataschema.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
# JSON strings (escapes included), removed before counting brackets.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[][{}]")


class EnvelopeError(ConveyorError, ValueError):
    """A message body that is not a job this code can run; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def is_json_media_type(content_type: str) -> bool:
    """Whether ``content_type`` is JSON as CloudEvents' JSON format reads it."""
    return bool(_JSON_MEDIA_TYPE.match(content_type.strip()))


def _nesting_exceeds(text: str, max_depth: int) -> bool:
    """Whether ``text`` nests arrays/objects deeper than ``max_depth`` (brackets in strings
    do not count; on malformed text it may overcount, which json.loads refuses anyway)."""
    if text.count("[") + text.count("{") <= max_depth:
        return False  # too few brackets to nest that deep: the common case costs two counts
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def load_json(
    body: str | bytes,
    *,
    what: str = "the message body",
    max_bytes: int = MAX_BODY_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """``json.loads(body)`` within bounds; raise :class:`EnvelopeError` otherwise.

    Reasons: ``too_large`` (above ``max_bytes``), ``too_deep`` (nested deeper than
    ``max_depth``), ``invalid_json`` (not JSON text, not UTF-8/16/32, or a number
    Python refuses to read, e.g. an integer above its 4,300-digit limit).
    """
    size = len(body) if isinstance(body, bytes) else len(body.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise EnvelopeError("too_large", f"{what} is {size} bytes, above the {max_bytes} read")
    try:
        text = body.decode(json.detect_encoding(body)) if isinstance(body, bytes) else body
    except (UnicodeError, LookupError) as exc:
        raise EnvelopeError("invalid_json", f"{what} is not JSON text: {exc}") from None
    if _nesting_exceeds(text, max_depth):
        raise EnvelopeError(
            "too_deep", f"{what} nests arrays/objects deeper than {max_depth} levels"
        )
    try:
        return json.loads(text)
    except RecursionError:  # the pre-scan bounds depth; this is the backstop
        raise EnvelopeError("too_deep", f"{what} nests too deeply to decode") from None
    except ValueError as exc:
        raise EnvelopeError("invalid_json", f"{what} is not JSON: {exc}") from None


class Envelope(BaseModel):
    """A job on the wire."""

    # CloudEvents lets producers add extension attributes: keep them, don't fail.
    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=100)
    source: str = Field(default="/conveyor", min_length=1)
    #: When the event happened (RFC 3339); optional in CloudEvents, Conveyor writes it.
    time: datetime | None = None
    datacontenttype: str = JSON_CONTENT_TYPE
    dataschema: str | None = None
    subject: str | None = Field(default=None, min_length=1)
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

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        # pydantic alone would also take numbers (Unix time) and bare dates.
        if isinstance(value, str) and not _RFC3339.match(value):
            raise ValueError("time is not an RFC 3339 timestamp ('2026-01-01T00:00:00Z')")
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("time is not an RFC 3339 timestamp string")
        return value

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @field_validator("datacontenttype")
    @classmethod
    def _media_type(cls, value: str) -> str:
        if not _MEDIA_TYPE.match(value):
            raise ValueError("datacontenttype is not a media type ('type/subtype')")
        return value

    @field_validator("dataschema")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None and not _URI.match(value):
            raise ValueError("dataschema is not an absolute URI")
        return value

    @model_validator(mode="after")
    def _unicode_attributes(self) -> Envelope:
        # JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 log line,
        # header or DynamoDB key can carry: refuse them in attributes (data is the
        # handler's business).
        # Extensions may hold any JSON, not only strings: look inside them too.
        texts = [(name, value) for name, value in self if isinstance(value, str)]
        texts += [
            (name, json.dumps(value, ensure_ascii=False, default=str))
            for name, value in (self.model_extra or {}).items()
        ]
        for name, text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{name}: not valid Unicode (a lone surrogate)") from None
        return self

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


def _inline_base64(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with its ``data_base64`` decoded into ``data`` (JSON content only)."""
    encoded = doc["data_base64"]
    rest = {k: v for k, v in doc.items() if k != "data_base64"}
    if rest.get("data") is not None:
        raise EnvelopeError(
            "invalid_envelope", "invalid envelope: data, data_base64: only one may be present"
        )
    content_type = rest.get("datacontenttype", JSON_CONTENT_TYPE)
    if not isinstance(content_type, str) or not is_json_media_type(content_type):
        raise EnvelopeError(
            "unsupported_content_type",
            f"data_base64 with datacontenttype {str(content_type)[:100]!r}: a job's payload"
            " must be JSON",
        )
    if not isinstance(encoded, str):
        raise EnvelopeError("invalid_envelope", "invalid envelope: data_base64: not a string")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(
            "invalid_envelope", "invalid envelope: data_base64: not valid base64"
        ) from None
    rest["data"] = load_json(raw, what="data_base64")
    return rest


def decode(body: str | bytes) -> Envelope:
    """Parse and validate a message body; raise :class:`EnvelopeError` with a reason code.

    Reasons: ``too_large``, ``too_deep``, ``invalid_json`` (see :func:`load_json`),
    ``not_an_envelope``, ``unsupported_version``, ``unsupported_content_type``,
    ``invalid_envelope``.
    """
    doc = load_json(body)
    if not isinstance(doc, dict) or "specversion" not in doc:
        raise EnvelopeError(
            "not_an_envelope", "the message body is not a CloudEvents document (no specversion)"
        )
    # A foreign event (not written by Conveyor) has no conveyorversion: read it as ours.
    version = doc.get("conveyorversion", ENVELOPE_VERSION)
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not 1 <= version <= ENVELOPE_VERSION
    ):
        shown = repr(version) if isinstance(version, int | str) else type(version).__name__
        raise EnvelopeError(
            "unsupported_version",
            f"envelope version {shown[:40]} is not supported (this worker reads 1 to"
            f" {ENVELOPE_VERSION})",
        )
    if "data_base64" in doc:
        doc = _inline_base64(doc)
    try:
        return Envelope.model_validate(doc)
    except ValidationError as exc:
        fields = errors_line(exc, whole="envelope")
        raise EnvelopeError("invalid_envelope", f"invalid envelope: {fields}") from None
