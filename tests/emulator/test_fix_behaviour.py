"""The fixes change costs and races, nothing else: same results, same errors as moto."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.sqs.models import Queue, SQSBackend, sqs_backends

from infra.emulator.fixes import FIXES, apply_fixes, revert_fixes

VOLATILE = {
    "MessageId",
    "ReceiptHandle",
    "SentTimestamp",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
}


def normalised(value: Any) -> Any:
    """A response without request metadata, random ids and clock readings."""
    if isinstance(value, dict):
        return {
            key: "*" if key in VOLATILE else normalised(item)
            for key, item in sorted(value.items())
            if key != "ResponseMetadata"
        }
    if isinstance(value, list):
        items = [normalised(item) for item in value]
        return sorted(items, key=repr)  # batch and receive order is not what is compared
    return value


class Transcript:
    """Every call's normalised response or error, in order."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self.lines: list[Any] = []

    def __call__(self, operation: str, **params: Any) -> Any:
        try:
            response = getattr(self.sqs, operation)(**params)
        except ClientError as error:
            self.lines.append((operation, error.response["Error"]))
            return None
        self.lines.append((operation, normalised(response)))
        return response


def scenario() -> list[Any]:
    """Standard, FIFO, DLQ and retention behaviour through boto3, on in-process moto."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    backend: SQSBackend = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    call = Transcript(sqs)
    url = call("create_queue", QueueName="std", Attributes={"MaximumMessageSize": "1024"})[
        "QueueUrl"
    ]
    attribute = {"k": {"DataType": "String", "StringValue": "v"}}
    call("send_message", QueueUrl=url, MessageBody="a", MessageAttributes=attribute)
    call(
        "send_message_batch",
        QueueUrl=url,
        Entries=[{"Id": f"e{i}", "MessageBody": f"b{i}"} for i in range(3)]
        + [{"Id": "late", "MessageBody": "c", "DelaySeconds": 901}],
    )
    call("send_message", QueueUrl=url, MessageBody="x" * 2000)  # over MaximumMessageSize
    call("send_message", QueueUrl=url, MessageBody="d", DelaySeconds=901)
    received = call(
        "receive_message",
        QueueUrl=url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
        VisibilityTimeout=60,
    )["Messages"]
    first, second = sorted(received, key=lambda message: message["Body"])[:2]
    call("delete_message", QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    call("delete_message", QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])  # twice
    call("delete_message", QueueUrl=url, ReceiptHandle="bogus")
    call("change_message_visibility", QueueUrl=url, ReceiptHandle="bogus", VisibilityTimeout=0)
    call(
        "change_message_visibility",
        QueueUrl=url,
        ReceiptHandle=second["ReceiptHandle"],
        VisibilityTimeout=0,
    )
    again = call("receive_message", QueueUrl=url, AttributeNames=["All"])["Messages"]
    call(
        "delete_message_batch",
        QueueUrl=url,
        Entries=[
            {"Id": "ok", "ReceiptHandle": again[0]["ReceiptHandle"]},
            {"Id": "old", "ReceiptHandle": second["ReceiptHandle"]},  # superseded, still valid
            {"Id": "bad", "ReceiptHandle": "bogus"},
        ],
    )
    call("get_queue_attributes", QueueUrl=url, AttributeNames=["All"])
    call("get_queue_attributes", QueueUrl=url, AttributeNames=["MessageRetentionPeriod"])
    call("purge_queue", QueueUrl=url)
    call("receive_message", QueueUrl=url)

    fifo = call(
        "create_queue",
        QueueName="cbd.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    for _ in range(2):  # the second is a duplicate by content
        call("send_message", QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
    call("send_message", QueueUrl=fifo, MessageBody="no group")
    call("receive_message", QueueUrl=fifo, MaxNumberOfMessages=10)
    plain = call("create_queue", QueueName="plain.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    call("send_message", QueueUrl=plain, MessageBody="no dedup id", MessageGroupId="g")
    for _ in range(2):
        call(
            "send_message",
            QueueUrl=plain,
            MessageBody="dedup",
            MessageGroupId="g",
            MessageDeduplicationId="d1",
        )
    call("receive_message", QueueUrl=plain, MaxNumberOfMessages=10)

    dlq = call("create_queue", QueueName="dlq")["QueueUrl"]
    dlq_arn = call("get_queue_attributes", QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    source = call(
        "create_queue",
        QueueName="source",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
        },
    )["QueueUrl"]
    call("send_message", QueueUrl=source, MessageBody="poison")
    call("receive_message", QueueUrl=source, VisibilityTimeout=0)
    call("receive_message", QueueUrl=source, VisibilityTimeout=0)  # redriven to the DLQ
    call("receive_message", QueueUrl=dlq)

    old = call("create_queue", QueueName="old", Attributes={"MessageRetentionPeriod": "60"})[
        "QueueUrl"
    ]
    call("send_message", QueueUrl=old, MessageBody="expired")
    expired = backend.get_queue("old")._messages[0]
    expired.sent_timestamp -= 120_000  # type: ignore[operator, assignment]  # sent 2 min ago
    call("receive_message", QueueUrl=old)
    call("receive_message", QueueUrl=f"{url}-missing")
    call("purge_queue", QueueUrl=f"{url}-missing")
    return call.lines


def run_scenario(fixes: list[str]) -> list[Any]:
    revert_fixes()
    apply_fixes(fixes)
    try:
        with mock_aws():
            return scenario()
    finally:
        revert_fixes()


def test_fixed_moto_answers_exactly_as_moto_does() -> None:
    shipped, fixed = run_scenario([]), run_scenario(list(FIXES))
    assert len(fixed) == len(shipped)
    for (operation, expected), (_, actual) in zip(shipped, fixed, strict=True):
        assert actual == expected, operation


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"ContentBasedDeduplication": "true"},  # accepted, and ignored, on a standard queue
        {"FifoQueue": "true"},
        {"FifoQueue": "true", "ContentBasedDeduplication": "true"},
        {"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    ],
)
def test_attribute_reads_match_what_moto_computes(
    attributes: dict[str, str], backend: SQSBackend
) -> None:
    """The expressions cheap_attribute_reads puts into moto's source, against moto's own."""
    name = "q.fifo" if attributes.get("FifoQueue") else "q"
    queue = backend.create_queue(name, None, **attributes)
    content_based = queue.attributes.get("ContentBasedDeduplication")
    assert (content_based == "true") == bool(
        queue.fifo_queue and queue.content_based_deduplication  # type: ignore[attr-defined]
    )
    if queue.fifo_queue:
        assert (content_based == "false") == (not queue.content_based_deduplication)  # type: ignore[attr-defined]
    retention = backend.get_queue_attributes(name, ["MessageRetentionPeriod"])
    assert retention["MessageRetentionPeriod"] == queue.message_retention_period  # type: ignore[attr-defined]


@pytest.fixture
def spy_on_long_polls(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set when a receive starts waiting for messages."""
    waiting = threading.Event()
    wait_for_messages = Queue.wait_for_messages

    def spied(self: Queue, timeout: int) -> None:
        waiting.set()
        wait_for_messages(self, timeout)

    monkeypatch.setattr(Queue, "wait_for_messages", spied)
    return waiting


def test_a_long_poll_lets_others_in_while_it_waits(
    env_fixes: list[str], backend: SQSBackend, spy_on_long_polls: threading.Event
) -> None:
    """serialise_queue_mutations holds the lock across a receive, not across its wait."""
    backend.create_queue("long-poll")
    received: list[str] = []
    receiver = threading.Thread(
        target=lambda: received.extend(
            message.body for message in backend.receive_message("long-poll", 1, 10, 60)
        )
    )
    receiver.start()
    assert spy_on_long_polls.wait(timeout=10), "the receive never started waiting"
    # If the waiting receive still held the queue's lock, this would block until
    # its 10 s poll ended empty-handed, and `received` would stay empty.
    backend.send_message("long-poll", "hello")
    receiver.join(timeout=30)
    assert received == ["hello"]
