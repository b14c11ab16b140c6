"""A dead-lettered message, decoded for people: which job, why it died, when, with what.

The body is the job's original body (see :mod:`infra.failure`); the failure
record travels in the ``conveyor.failure`` message attribute. Messages that SQS's
native redrive moved (a worker died with the job in hand) have no record: they
are shown with :data:`NATIVE_REDRIVE_REASON` and their receive count.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.envelope import Envelope, EnvelopeError, decode
from infra.failure import (
    FAILURE_ATTRIBUTE,
    REDRIVE_COUNT,
    REDRIVEN_AT,
    Failure,
    has_failure_attribute,
)

#: The reason shown for a message without a failure record.
NATIVE_REDRIVE_REASON = "native redrive (worker lost or crashed)"
#: How much of a payload the one-line summary shows.
PAYLOAD_SUMMARY_CHARS = 120
#: How many lines of a traceback ``--traceback`` shows (the end matters most).
TRACEBACK_LINES = 12


def parse_time(value: object) -> datetime | None:
    """An aware datetime from an ISO 8601 string, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _from_ms(value: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(value)) / 1000, UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _json_object(body: str) -> tuple[dict[str, Any] | None, str | None]:
    """The body as a JSON object (or None), and why it cannot be read at all (or None).

    Any body must do: one nested a thousand levels deep makes ``json.loads`` raise
    RecursionError, a JSON ``"\\udcff"`` escape yields text no terminal can take.
    """
    try:
        doc = json.loads(body)
    except RecursionError:
        return None, "JSON nested too deeply to decode"
    except ValueError:
        return None, None  # not JSON: shown as such (invalid_json), not undecodable
    except Exception as exc:  # noqa: BLE001 - a DLQ holds whatever was sent
        return None, f"{type(exc).__name__} while decoding"
    return (doc if isinstance(doc, dict) else None), None


def _text(body: object) -> tuple[str, int, str | None]:
    """A message body as text, its size in bytes, and why it is not valid text (or None)."""
    if isinstance(body, bytes | bytearray):
        raw = bytes(body)
        try:
            return raw.decode("utf-8"), len(raw), None
        except UnicodeDecodeError:
            # Kept byte for byte (surrogateescape), so a redrive can send it back.
            return raw.decode("utf-8", "surrogateescape"), len(raw), "invalid UTF-8"
    text = body if isinstance(body, str) else str(body or "")
    try:
        return text, len(text.encode("utf-8")), None
    except UnicodeEncodeError:
        return text, len(text.encode("utf-8", "surrogatepass")), "invalid UTF-8"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class DeadJob:
    """One message of a DLQ."""

    message_id: str
    body: str
    #: SQS system attributes (SentTimestamp, ApproximateReceiveCount, MessageGroupId…).
    attributes: dict[str, str]
    #: Message attributes as received, ``conveyor.failure`` included.
    message_attributes: dict[str, dict[str, Any]]
    failure: Failure | None
    envelope: Envelope | None
    #: Why the body is not a valid envelope (an ``infra.envelope.decode`` reason), if it is not.
    envelope_error: str | None
    #: The failure attribute was present but unreadable.
    failure_unreadable: bool = False
    #: Why the body cannot be decoded at all (deep nesting, invalid UTF-8), if so.
    undecodable: str | None = None
    #: The body's size in bytes.
    size_bytes: int = 0
    #: The body parsed once, if it is a JSON object (see :attr:`document`).
    parsed: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> DeadJob:
        """Decode a received SQS message (never raises, whatever its body and attributes)."""
        body, size_bytes, undecodable = _text(message.get("Body"))
        failure = Failure.from_message(message)
        failure_unreadable = failure is None and has_failure_attribute(message)
        envelope: Envelope | None = None
        envelope_error: str | None = None
        parsed: dict[str, Any] | None = None
        if undecodable is None:
            # One parse bounds the cost of a hostile body; decode() parses only if it can.
            parsed, undecodable = _json_object(body)
        if undecodable is not None:
            envelope_error = "invalid_json"
        else:
            try:
                envelope = decode(body)
            except EnvelopeError as exc:
                envelope_error = exc.reason
            except Exception as exc:  # noqa: BLE001 - a DLQ holds whatever was sent
                envelope_error, undecodable = "invalid_json", f"{type(exc).__name__} while decoding"
        raw_attributes = message.get("Attributes")
        raw_message_attributes = message.get("MessageAttributes")
        return cls(
            message_id=str(message.get("MessageId") or "(no message id)"),
            body=body,
            attributes=(
                {str(k): str(v) for k, v in raw_attributes.items()}
                if isinstance(raw_attributes, dict)
                else {}
            ),
            message_attributes=(
                dict(raw_message_attributes) if isinstance(raw_message_attributes, dict) else {}
            ),
            failure=failure,
            envelope=envelope,
            envelope_error=envelope_error,
            failure_unreadable=failure_unreadable,
            undecodable=undecodable,
            size_bytes=size_bytes,
            parsed=parsed,
        )

    # -- identity -------------------------------------------------------------------

    @property
    def document(self) -> dict[str, Any] | None:
        """The body as a JSON object, if it is one (envelope or not)."""
        return self.parsed

    @property
    def job_id(self) -> str | None:
        """The job id: from the envelope, the failure record, or the body's ``id``."""
        if self.envelope is not None:
            return self.envelope.id
        if self.failure is not None and self.failure.job_id:
            return self.failure.job_id
        doc = self.document
        found = doc.get("id") if doc else None
        return found if isinstance(found, str) and found else None

    @property
    def job_type(self) -> str | None:
        """The job type, found the same way as :attr:`job_id`."""
        if self.envelope is not None:
            return self.envelope.type
        if self.failure is not None and self.failure.job_type:
            return self.failure.job_type
        doc = self.document
        found = doc.get("type") if doc else None
        return found if isinstance(found, str) and found else None

    def has_id(self, wanted: str) -> bool:
        """Whether ``wanted`` is this job's id or this message's id."""
        return wanted in (self.message_id, self.job_id)

    # -- why and when ---------------------------------------------------------------

    @property
    def reason(self) -> str:
        """Why the job was dead-lettered (a :data:`infra.failure.REASONS` code)."""
        if self.failure is not None:
            return self.failure.reason
        if self.failure_unreadable:
            return f"unreadable failure record ({FAILURE_ATTRIBUTE})"
        return NATIVE_REDRIVE_REASON

    @property
    def error(self) -> str:
        """``ErrorType: message``, or an explanation when there is no record."""
        if self.failure is not None:
            return f"{self.failure.error_type}: {self.failure.error_message}"
        return f"no failure record; received {self.receive_count} times"

    @property
    def receive_count(self) -> int:
        """SQS's ApproximateReceiveCount (includes the receives that inspected it)."""
        try:
            return int(self.attributes.get("ApproximateReceiveCount", 0))
        except ValueError:
            return 0

    @property
    def sent_at(self) -> datetime | None:
        """When the message entered the DLQ (for a native redrive: when it was first sent)."""
        return _from_ms(self.attributes.get("SentTimestamp"))

    @property
    def failed_at(self) -> datetime | None:
        """When the job last failed: the record's time, else when the message was sent."""
        if self.failure is not None:
            return parse_time(self.failure.last_failure_at) or self.sent_at
        return self.sent_at

    @property
    def first_attempt_at(self) -> datetime | None:
        """When the job was first handed to a worker, if recorded."""
        return parse_time(self.failure.first_attempt_at) if self.failure else None

    @property
    def redrive_count(self) -> int:
        """How often the job was redriven before (the envelope's :data:`REDRIVE_COUNT`)."""
        extra = self.envelope.model_extra if self.envelope is not None else None
        value = (extra or {}).get(REDRIVE_COUNT, 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    @property
    def redriven_at(self) -> str | None:
        """When the job was last redriven (the envelope's :data:`REDRIVEN_AT`)."""
        extra = self.envelope.model_extra if self.envelope is not None else None
        value = (extra or {}).get(REDRIVEN_AT)
        return value if isinstance(value, str) else None

    # -- content --------------------------------------------------------------------

    def payload_summary(self, limit: int = PAYLOAD_SUMMARY_CHARS) -> str:
        """The payload on one line, clipped; the raw body if it is not an envelope."""
        if self.undecodable is not None:
            return f"undecodable: {self.undecodable} ({self.size_bytes} bytes)"
        if self.envelope is not None:
            if self.envelope.dataref is not None:
                return f"(claim check: {self.envelope.dataref})"
            text = json.dumps(self.envelope.data, separators=(",", ":"), ensure_ascii=False)
        else:
            text = f"({self.envelope_error}) {self.body}"
        return _clip(" ".join(text.split()), limit)

    def traceback_excerpt(self, lines: int = TRACEBACK_LINES) -> str:
        """The last ``lines`` lines of the recorded traceback ("" when none)."""
        if self.failure is None or not self.failure.traceback:
            return ""
        kept = self.failure.traceback.rstrip().splitlines()
        return "\n".join((["…"] if len(kept) > lines else []) + kept[-lines:])

    def to_json(self, *, traceback: bool = False, full: bool = False) -> dict[str, Any]:
        """What ``dlq show --json`` prints for the job."""
        f = self.failure
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "job_id": self.job_id,
            "type": self.job_type,
            "reason": self.reason,
            "error_type": f.error_type if f else None,
            "error_message": f.error_message if f else None,
            "attempts": f.attempts if f else None,
            "max_attempts": f.max_attempts if f else None,
            "receive_count": self.receive_count,
            "first_attempt_at": f.first_attempt_at if f else None,
            "last_failure_at": _iso(self.failed_at),
            "dead_lettered_at": _iso(self.sent_at),
            "queue": f.queue if f else None,
            "worker": f.worker if f else None,
            "redrive_count": self.redrive_count,
            "redriven_at": self.redriven_at,
            "payload": self.payload_summary(),
            "size_bytes": self.size_bytes,
            "undecodable": self.undecodable,
        }
        if traceback:
            out["traceback"] = f.traceback if f else ""
        if full:
            out["envelope"] = self.document if self.envelope is not None else None
            out["body"] = self.body if self.envelope is None else None
        return out

    def export_record(self) -> dict[str, Any]:
        """One line of ``dlq export``: everything needed to understand or resend the message."""
        return {
            "message_id": self.message_id,
            "job_id": self.job_id,
            "type": self.job_type,
            "reason": self.reason,
            "undecodable": self.undecodable,
            "body": self.body,
            "failure": asdict(self.failure) if self.failure else None,
            "attributes": self.attributes,
            "message_attributes": self.message_attributes,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
