"""Cron schedules as tests see them: the timer table, and the jobs a queue received by tick."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from infra import aws
from infra.aws.errors import error_code
from infra.aws.names import TABLE_PARTITION_KEY, TABLE_SORT_KEY, timers_table_name
from infra.envelope import Envelope, decode
from infra.topology import Topology
from tests.support.queues import receive_all


def create_timers_table(topology: Topology) -> str:
    """Create the timer table (``pk``/``sk`` strings, on demand) unless it exists; its name.

    ``conveyor infra apply`` provisions it once the scheduler role is in; the schedule
    tests do not depend on that."""
    name = timers_table_name(topology)
    try:
        aws.client("dynamodb").create_table(
            TableName=name,
            AttributeDefinitions=[
                {"AttributeName": TABLE_PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": TABLE_SORT_KEY, "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": TABLE_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": TABLE_SORT_KEY, "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise
    return name


def envelope_of(message: dict[str, Any]) -> Envelope:
    """The job in an SQS message (raw delivery, or inside an SNS notification)."""
    body = json.loads(message["Body"])
    if isinstance(body, dict) and body.get("Type") == "Notification":
        return decode(body["Message"])
    return decode(message["Body"])


def received_jobs(url: str) -> list[Envelope]:
    """Every job waiting in the queue at ``url``, received for good."""
    return [envelope_of(m) for m in receive_all(url)]
