"""``dlq redrive --native``: SQS's own StartMessageMoveTask, where the endpoint has it.

Opt-in rather than automatic: a native move takes every message (no filter, no
limit, no dry run), runs in the background with no per-job progress, keeps the
``conveyor.failure`` attribute and cannot record the redrive in the envelope. So
the same command would behave differently on AWS and on the embedded emulator
(moto 5.2.5 does not implement the API) if it switched by itself. It is there
for very large DLQs on AWS, where moving server-side at up to 500 messages/s is
worth those differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.aws.errors import describe_aws_error, is_unsupported_operation
from infra.aws.lookup import queue_arn
from ops.dlq.queues import DlqError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: SQS's ceiling for MaxNumberOfMessagesPerSecond.
MAX_NATIVE_RATE = 500


@dataclass(frozen=True)
class NativeMove:
    """A started StartMessageMoveTask."""

    task_handle: str
    source_arn: str
    destination_arn: str | None


def start_native_move(
    sqs: SQSClient,
    dlq_url: str,
    destination_url: str | None,
    *,
    rate_per_s: float | None = None,
) -> NativeMove:
    """Start moving every message of the DLQ (to its source queues, or ``destination_url``)."""
    source_arn = queue_arn(sqs, dlq_url)
    request: dict[str, Any] = {"SourceArn": source_arn}
    destination_arn = queue_arn(sqs, destination_url) if destination_url else None
    if destination_arn is not None:
        request["DestinationArn"] = destination_arn
    if rate_per_s is not None:
        request["MaxNumberOfMessagesPerSecond"] = max(
            1, min(MAX_NATIVE_RATE, math.floor(rate_per_s))
        )
    try:
        response = sqs.start_message_move_task(**request)
    except ClientError as exc:
        # AWS's own 500s carry a code (InternalError); a bare status is an emulator's
        # (moto 5.2.5 does not implement StartMessageMoveTask).
        if is_unsupported_operation(exc):
            raise DlqError(
                "this endpoint does not support StartMessageMoveTask (the embedded"
                " emulator does not): run the redrive without --native"
            ) from exc
        raise DlqError(f"StartMessageMoveTask: {describe_aws_error(exc)}") from exc
    except BotoCoreError as exc:
        raise DlqError(f"StartMessageMoveTask: {describe_aws_error(exc)}") from exc
    return NativeMove(response["TaskHandle"], source_arn, destination_arn)
