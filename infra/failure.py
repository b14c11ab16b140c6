"""The failure record of a dead-lettered message, and the redrive stamps (the wire contract).

The DLQ message body is the original body, byte for byte (so a redrive sends back
exactly what was published, even when it was not valid JSON); the failure travels
in one String message attribute, :data:`FAILURE_ATTRIBUTE`, as JSON. One attribute
leaves room under SQS's limit of 10, and String (not Binary) because moto fails
on Binary attributes delivered through SNS.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

FAILURE_ATTRIBUTE = "conveyor.failure"
#: CloudEvents extension attributes a redrive records in the envelope: how often the
#: job was redriven (it starts a fresh attempt budget) and when, last.
REDRIVE_COUNT = "conveyorredrivecount"
REDRIVEN_AT = "conveyorredrivenat"
FAILURE_VERSION = 1
#: Bounds that keep the attribute far below SQS's message size limit.
MAX_ERROR_MESSAGE_CHARS = 2_000
MAX_TRACEBACK_CHARS = 4_000

#: Why a job was dead-lettered.
REASONS = (
    "attempts_exhausted",  # every attempt failed
    "permanent_error",  # the handler raised PermanentError
    "invalid_payload",  # the payload failed the job type's model
    "unknown_job_type",  # no such job type in queues.yaml
    "no_handler",  # the job type has no handler on this queue
    "invalid_json",  # envelope decoding failures, see infra.envelope.decode
    "not_an_envelope",
    "unsupported_version",
    "invalid_envelope",
    "unsupported_dataref",  # a claim-checked payload this worker cannot fetch
    # The consumer boundary (workers/intake.py): a message that cannot become a job.
    "too_large",  # above infra.envelope.MAX_BODY_BYTES (or a payload above payloads.max_bytes)
    "too_deep",  # JSON nested deeper than infra.envelope.MAX_JSON_DEPTH
    "unsupported_content_type",  # data_base64 whose datacontenttype is not JSON
    "undecodable",  # anything else that went wrong turning the message into a job
    # infra.claim_check: the dataref is not this job's object in this environment's bucket,
    # the object is gone or not JSON, or it is larger than payloads.max_bytes.
    "invalid_dataref",
    "payload_missing",
    "invalid_payload_object",
    "payload_too_large",
)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail(text: str, limit: int) -> str:
    # The end of a traceback (the raising frame and the error) matters most.
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


@dataclass(frozen=True)
class Failure:
    """Why and when a job failed for good."""

    reason: str
    error_type: str
    error_message: str
    attempts: int
    max_attempts: int
    queue: str
    worker: str
    #: When SQS first handed the message out (ApproximateFirstReceiveTimestamp), ISO 8601.
    first_attempt_at: str | None
    last_failure_at: str
    job_id: str | None = None
    job_type: str | None = None
    traceback: str = ""
    version: int = FAILURE_VERSION

    def to_attribute(self) -> dict[str, dict[str, str]]:
        """The SQS MessageAttributes entry that carries this record."""
        record = asdict(self)
        record["error_message"] = _clip(self.error_message, MAX_ERROR_MESSAGE_CHARS)
        record["traceback"] = _tail(self.traceback, MAX_TRACEBACK_CHARS)
        return {
            FAILURE_ATTRIBUTE: {
                "DataType": "String",
                "StringValue": json.dumps(record, separators=(",", ":")),
            }
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Failure | None:
        """The record on a received DLQ message, or None if it has none (native redrive).

        Never raises: an attribute that is not a well-formed record (not JSON, too
        deeply nested, not an object, a field of the wrong type) is None too;
        :func:`has_failure_attribute` tells the two cases apart.
        """
        attributes = message.get("MessageAttributes")
        attr = attributes.get(FAILURE_ATTRIBUTE) if isinstance(attributes, dict) else None
        if not isinstance(attr, dict) or not isinstance(attr.get("StringValue"), str):
            return None
        try:
            # RecursionError (deep nesting) and anything else a hostile value causes.
            record = json.loads(attr["StringValue"])
        except Exception:  # noqa: BLE001 - any input must yield "unreadable", not a crash
            return None
        if not isinstance(record, dict):
            return None
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        for name, types in _FIELD_TYPES.items():
            if name in known and not (
                isinstance(known[name], types) and not isinstance(known[name], bool)
            ):
                return None
        try:
            return cls(**known)
        except TypeError:  # a required field is missing
            return None


#: The types a record's fields must have (None allowed where the field is optional).
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "reason": str,
    "error_type": str,
    "error_message": str,
    "attempts": int,
    "max_attempts": int,
    "queue": str,
    "worker": str,
    "first_attempt_at": (str, type(None)),
    "last_failure_at": str,
    "job_id": (str, type(None)),
    "job_type": (str, type(None)),
    "traceback": str,
    "version": int,
}


def has_failure_attribute(message: dict[str, Any]) -> bool:
    """Whether ``message`` carries a :data:`FAILURE_ATTRIBUTE` (readable or not)."""
    attributes = message.get("MessageAttributes") or {}
    return isinstance(attributes, dict) and FAILURE_ATTRIBUTE in attributes
