"""Building the SendMessage request that writes a failed message to its DLQ.

Shared by every consumer (the Celery transport, the Lambda adapter): the body is
the original one byte for byte, the failure record rides in one attribute, and
the message's own String/Number/Binary attributes are kept where they fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.failure import Failure

#: SQS allows 10 message attributes; one is the failure record.
_MAX_KEPT_ATTRIBUTES = 9


def _resendable(value: Mapping[str, Any]) -> dict[str, Any] | None:
    # ReceiveMessage returns list fields that SendMessage rejects; keep what defines the value.
    kept = {k: value[k] for k in ("DataType", "StringValue", "BinaryValue") if value.get(k)}
    return kept if "DataType" in kept and len(kept) == 2 else None


def dead_letter_request(
    message: Mapping[str, Any], failure: Failure, *, dlq_url: str, fifo: bool
) -> dict[str, Any]:
    """SendMessage arguments that put ``message`` (an SQS API-shaped dict) in ``dlq_url``."""
    attributes: dict[str, Any] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        kept = _resendable(value)
        if kept is not None and len(attributes) < _MAX_KEPT_ATTRIBUTES:
            attributes[name] = kept
    attributes.update(failure.to_attribute())
    request: dict[str, Any] = {
        "QueueUrl": dlq_url,
        "MessageBody": message["Body"],
        "MessageAttributes": attributes,
    }
    if fifo:
        group = (message.get("Attributes") or {}).get("MessageGroupId")
        request["MessageGroupId"] = group or failure.job_id or "dead-letter"
        # The source message id: a crash-and-retry of this write is deduplicated.
        request["MessageDeduplicationId"] = message["MessageId"]
    return request
