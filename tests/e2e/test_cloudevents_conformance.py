"""CloudEvents 1.0 conformance at the consumer: events built and serialized (structured JSON
mode) by the official CloudEvents Python SDK, not by Conveyor, run as jobs.

Some have no ``time`` (optional in the spec), none has Conveyor's ``conveyorversion``,
some carry extension attributes, ``subject``, ``dataschema``, or their data as
``data_base64``. They are published with plain boto3 ``sns.publish`` and sent straight
to the queue with ``sqs.send_message`` to a real `conveyor worker` process, and fed to
``workers.lambda_handler`` as an SQS event record shaped as AWS documents it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1.conversion import to_structured
from cloudevents.v1.http import CloudEvent as V1CloudEvent

from infra import aws
from tests.faults.harness import Cluster, cluster
from tests.support.polling import eventually
from workers import lambda_handler

pytestmark = pytest.mark.e2e

JOB_TYPE = "fault.note"  # tests/faults/faults.yaml: queue alpha, handler tests.jobs:record


def sdk_events(label: str) -> dict[str, bytes]:
    """Structured-mode JSON bodies by the SDK, by a description of what they exercise."""
    events: dict[str, bytes] = {}

    def without_time(attributes: dict[str, Any], data: Any) -> bytes:
        # The SDK's v1 API sets time unless told otherwise; its event supports deletion.
        event = V1CloudEvent(attributes, data)
        del event["time"]
        _, body = to_structured(event)
        return body

    events["no time, an extension"] = without_time(
        {"type": JOB_TYPE, "source": "urn:example:orders", "tenant": "acme"},
        {"label": f"{label}-no-time"},
    )
    events["no time, data_base64 of JSON"] = without_time(
        {"type": JOB_TYPE, "source": "urn:example:orders", "datacontenttype": "application/json"},
        json.dumps({"label": f"{label}-b64"}).encode(),
    )
    events["no time, subject and dataschema"] = without_time(
        {
            "type": JOB_TYPE,
            "source": "https://example.com/orders",
            "subject": "order-1",
            "dataschema": "https://example.com/schemas/note.json",
        },
        {"label": f"{label}-schema"},
    )
    with_time = CloudEvent(
        {
            "type": JOB_TYPE,
            "source": "https://example.com/orders",
            "subject": "order-2",
            "datacontenttype": "application/json",
            "partitionkey": "p1",
        },
        {"label": f"{label}-core"},
    )
    events["core API, time and an extension"] = to_structured_event(with_time).body
    binary = CloudEvent(
        {
            "type": JOB_TYPE,
            "source": "/example",
            "id": str(uuid.uuid4()),
            "datacontenttype": "application/json; charset=utf-8",
        },
        json.dumps({"label": f"{label}-core-b64"}).encode(),
    )
    events["core API, data_base64 with a charset"] = to_structured_event(binary).body
    return events


def _id(body: bytes) -> str:
    job_id: str = json.loads(body)["id"]
    return job_id


__all__ = ["cluster"]  # the fault suite's fixture, used here


def _ran(cluster: Cluster, ids: list[str], times: int = 1) -> bool:
    return all(cluster.ok_runs(i) >= times for i in ids)


def test_sdk_events_run_through_sns_sqs_and_the_lambda_handler(cluster: Cluster) -> None:
    node = cluster.node("a")
    sqs, sns = aws.client("sqs"), aws.client("sns")
    url = cluster.url("alpha")

    via_sns = sdk_events("sns")
    for body in via_sns.values():
        sns.publish(TopicArn=cluster.topic_arn(), Message=body.decode())
    via_sqs = sdk_events("sqs")
    for body in via_sqs.values():
        sqs.send_message(QueueUrl=url, MessageBody=body.decode())
    ids = [_id(b) for b in [*via_sns.values(), *via_sqs.values()]]

    eventually(lambda: _ran(cluster, ids), what="every SDK event to run", timeout_s=60)
    cluster.drain_dead_letters()
    assert cluster.dead_messages == [], [f.reason for _, f in cluster.dead_messages if f]
    assert {i: cluster.ok_runs(i) for i in ids} == dict.fromkeys(ids, 1)
    assert node.alive

    # The same events, as the records of an SQS event that Lambda hands the handler.
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    records = [
        {
            "messageId": str(uuid.uuid4()),
            "receiptHandle": f"handle-{n}",
            "body": body.decode(),
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1767225600000",
                "SenderId": "AIDAEXAMPLE",
                "ApproximateFirstReceiveTimestamp": "1767225600100",
            },
            "messageAttributes": {},
            "md5OfBody": "0" * 32,
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": aws.region_name(),
        }
        for n, body in enumerate(via_sns.values())
    ]
    answer = lambda_handler({"Records": records}, None)
    assert answer == {"batchItemFailures": []}
    sns_ids = [_id(b) for b in via_sns.values()]
    assert {i: cluster.ok_runs(i) for i in sns_ids} == dict.fromkeys(sns_ids, 2)
