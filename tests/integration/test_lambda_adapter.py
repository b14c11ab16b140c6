"""The Lambda adapter on the real emulator, with real SQS event documents.

Each test sends messages to a provisioned queue, receives them as Lambda's event
source mapping would (all system and message attributes, a long visibility
timeout), turns them into the records of a Lambda SQS event, calls
``workers.lambda_handler`` and then does what Lambda does with the answer: delete
every record that is not in ``batchItemFailures``.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

from infra import aws, provision
from infra.backoff import backoff_delay_s
from infra.envelope import encode, make_envelope
from infra.failure import Failure
from infra.topology import Topology, load_topology
from tests import REPO
from tests.support import outbox as handler_outbox
from tests.support.polling import eventually
from tests.support.queues import peek_until, visible_in_flight
from workers import lambda_handler

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration

PIPELINE = REPO / "tests" / "fixtures" / "pipeline.yaml"
#: The visibility timeout of our receives, like a mapping's (six times the function timeout):
#: far beyond every deadline here, so a message that comes back early was made visible.
IN_FLIGHT_S = 600

FIFO_TOPOLOGY = """\
version: 1
project: ct
environment: test
topics:
  ordered: {fifo: true}
queues:
  orders:
    fifo: true
    visibility_timeout_s: 30
    subscriptions: [{topic: ordered}]
    retry:
      max_attempts: 3
      backoff: {base_s: 1, max_s: 4, jitter: none}
job_types:
  test.record: {topic: ordered, payload: "tests.jobs:Note", handler: "tests.jobs:record"}
  test.flaky: {topic: ordered, payload: "tests.jobs:Flaky", handler: "tests.jobs:flaky"}
"""


def _lambda_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A message attribute as Lambda writes it into an SQS event (binary in base64)."""
    converted: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return converted


def lambda_record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    """The record Lambda's event source mapping builds from a received SQS message."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message["Attributes"]),
        "messageAttributes": {
            name: _lambda_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": aws.region_name(),
    }


@dataclass
class Queue:
    """One SQS queue, by URL and ARN."""

    url: str
    arn: str


@dataclass
class Harness:
    """A provisioned topology, the handlers' outbox, and Lambda's part of the work."""

    topology: Topology
    outbox: Path

    @property
    def sqs(self) -> SQSClient:
        return aws.client("sqs")

    def queue(self, name: str) -> Queue:
        """A queue by its AWS name."""
        url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return Queue(url, arn["Attributes"]["QueueArn"])

    def work(self, queue: str) -> Queue:
        return self.queue(self.topology.queue_name(queue))

    def dlq(self, queue: str) -> Queue:
        return self.queue(self.topology.dlq_name(queue))

    def send(self, queue: Queue, body: str, **fields: Any) -> str:
        return self.sqs.send_message(QueueUrl=queue.url, MessageBody=body, **fields)["MessageId"]

    def receive_now(self, queue: Queue, *, wait_s: int = 1) -> list[dict[str, Any]]:
        """One receive, as the event source mapping makes it (a long poll of ``wait_s``)."""
        got = self.sqs.receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_s,
            VisibilityTimeout=IN_FLIGHT_S,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return [dict(m) for m in got.get("Messages", [])]

    def receive(self, queue: Queue, count: int) -> list[dict[str, Any]]:
        """Receive until ``count`` messages are in hand (they stay in flight)."""
        got: list[dict[str, Any]] = []

        def probe() -> list[dict[str, Any]] | None:
            got.extend(self.receive_now(queue))
            return got if len(got) >= count else None

        eventually(probe, what=f"{count} message(s) in {queue.url}")
        assert len(got) == count
        return got

    def invoke(self, queue: Queue, messages: Sequence[dict[str, Any]]) -> list[str]:
        """Call the handler with ``messages`` as one event; Lambda's deletes; the failures."""
        return self.invoke_records([lambda_record(m, queue.arn) for m in messages])

    def invoke_records(self, records: list[dict[str, Any]]) -> list[str]:
        context = SimpleNamespace(aws_request_id=str(uuid.uuid4()), function_name="conveyor")
        response = lambda_handler({"Records": records}, context)
        json.dumps(response)  # Lambda serialises it
        failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
        for record in records:
            if record["messageId"] not in failed:
                url = self.sqs.get_queue_url(QueueName=record["eventSourceARN"].split(":")[-1])
                self.sqs.delete_message(
                    QueueUrl=url["QueueUrl"], ReceiptHandle=record["receiptHandle"]
                )
        return failed

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        return handler_outbox.runs(self.outbox, job_id)

    def dead_letters(self, queue: str, count: int) -> list[dict[str, Any]]:
        """Wait for ``count`` messages in ``queue``'s DLQ; return them (left in place)."""
        dlq = self.dlq(queue)
        found = peek_until(
            dlq.url, count, what=f"{count} message(s) in the DLQ of {queue}", wait_s=1
        )
        assert len(found) == count
        return found

    def depth(self, queue: Queue) -> tuple[int, int]:
        """(visible, in flight) messages of ``queue``."""
        return visible_in_flight(queue.url)


def _harness(queues_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(queues_file))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    topology = load_topology(queues_file)  # under the test's CONVEYOR_ENVIRONMENT
    provision.apply(topology)
    return Harness(topology, outbox)


@pytest.fixture
def harness(aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return _harness(PIPELINE, tmp_path, monkeypatch)


@pytest.fixture
def fifo_harness(aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    queues_file = tmp_path / "fifo.yaml"
    queues_file.write_text(FIFO_TOPOLOGY, encoding="utf-8")
    return _harness(queues_file, tmp_path, monkeypatch)


def _job(job_type: str, data: dict[str, Any]) -> tuple[str, str]:
    envelope = make_envelope(job_type, data)
    return envelope.id, encode(envelope)


def _receive_count(message: dict[str, Any]) -> int:
    return int(message["Attributes"]["ApproximateReceiveCount"])


def test_partial_batch_reports_only_the_retried_item(harness: Harness) -> None:
    work = harness.work("work")
    ok_id, ok_body = _job("test.record", {"label": "fine"})
    flaky_id, flaky_body = _job("test.flaky", {"succeed_on_attempt": 2})
    doomed_id, doomed_body = _job("test.permanent", {"label": "doomed"})
    poison = "this is not json"
    kept_attributes = {
        "tenant": {"DataType": "String", "StringValue": "acme"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe"},
    }
    sent = {
        "ok": harness.send(work, ok_body),
        "flaky": harness.send(work, flaky_body),
        "doomed": harness.send(work, doomed_body),
        "poison": harness.send(work, poison, MessageAttributes=kept_attributes),
    }
    messages = harness.receive(work, 4)

    invoked_at = time.monotonic()
    failed = harness.invoke(work, messages)

    # Only the retried job is reported; Lambda deletes the success and the dead letters.
    assert failed == [sent["flaky"]]
    assert [(a["attempt"], a["outcome"]) for a in harness.attempts(ok_id)] == [(1, "ok")]
    assert [(a["attempt"], a["outcome"]) for a in harness.attempts(flaky_id)] == [(1, "failed")]

    # The permanent failure and the poison body are in the DLQ with their failure record.
    by_body = {m["Body"]: m for m in harness.dead_letters("work", 2)}
    doomed = Failure.from_message(by_body[doomed_body])
    assert doomed is not None
    assert (doomed.reason, doomed.attempts, doomed.job_id) == ("permanent_error", 1, doomed_id)
    assert doomed.error_message == "doomed can never work"
    poisoned_message = by_body[poison]  # the original body, byte for byte
    poisoned = Failure.from_message(poisoned_message)
    assert poisoned is not None
    assert (poisoned.reason, poisoned.attempts) == ("invalid_json", 1)
    # The message's own attributes survived the trip through Lambda's event format.
    attributes = poisoned_message["MessageAttributes"]
    assert attributes["tenant"]["StringValue"] == "acme"
    assert attributes["blob"]["BinaryValue"] == b"\x00\x01\xfe"

    # The retried message is invisible for its backoff delay, then comes back with the
    # next receive count. Receives start right after the invocation, and none returns
    # it sooner than the delay after the invocation started (the visibility change came
    # later: a lower bound, whatever the machine's speed). Our own receive hid it for
    # IN_FLIGHT_S, so seeing it within the deadline means the adapter shortened that.
    delay_s = backoff_delay_s(1, harness.topology.retry_for("work", "test.flaky").backoff)
    seen_after: list[float] = []
    waits = iter([0])  # the first receive does not wait at all, the next ones long-poll

    def probe() -> dict[str, Any] | None:
        got = harness.receive_now(work, wait_s=next(waits, 1))
        retried = next((m for m in got if m["MessageId"] == sent["flaky"]), None)
        if retried is not None:
            seen_after.append(time.monotonic() - invoked_at)
        return retried

    retried = eventually(probe, what="the retried message to be visible again")
    assert seen_after[0] >= delay_s
    assert _receive_count(retried) == 2

    assert harness.invoke(work, [retried]) == []
    assert [(a["attempt"], a["outcome"]) for a in harness.attempts(flaky_id)] == [
        (1, "failed"),
        (2, "ok"),
    ]
    assert harness.depth(work) == (0, 0)
    assert harness.depth(harness.dlq("work")) == (2, 0)


def test_always_failing_job_is_dead_lettered_after_its_attempt_budget(harness: Harness) -> None:
    work = harness.work("work")
    job_id, body = _job("test.fail", {"label": "hopeless"})
    message_id = harness.send(work, body)
    budget = harness.topology.retry_for("work", "test.fail").max_attempts

    for attempt in range(1, budget + 1):
        # Each receive waits out the previous backoff; the attempt is SQS's receive count.
        [message] = harness.receive(work, 1)
        assert _receive_count(message) == attempt
        failed = harness.invoke(work, [message])
        assert failed == ([message_id] if attempt < budget else [])

    [dead] = harness.dead_letters("work", 1)
    failure = Failure.from_message(dead)
    assert failure is not None
    assert failure.reason == "attempts_exhausted"
    assert failure.attempts == budget == failure.max_attempts
    assert (failure.job_id, failure.job_type) == (job_id, "test.fail")
    assert failure.error_type == "ValueError"
    assert "ValueError" in failure.traceback
    assert dead["Body"] == body
    assert [a["attempt"] for a in harness.attempts(job_id)] == list(range(1, budget + 1))
    assert harness.depth(work) == (0, 0)


def test_record_from_an_unknown_queue_is_reported_and_left_alone(harness: Harness) -> None:
    work = harness.work("work")
    stranger_name = harness.topology.resource_name("stranger")
    harness.sqs.create_queue(QueueName=stranger_name)
    stranger = harness.queue(stranger_name)
    stray_id, stray_body = _job("test.record", {"label": "stray"})
    ok_id, ok_body = _job("test.record", {"label": "fine"})
    stray_message_id = harness.send(stranger, stray_body)
    harness.send(work, ok_body)
    [stray] = harness.receive(stranger, 1)
    [ok] = harness.receive(work, 1)

    failed = harness.invoke_records(
        [lambda_record(stray, stranger.arn), lambda_record(ok, work.arn)]
    )

    assert failed == [stray_message_id]
    assert harness.attempts(stray_id) == []  # not run
    assert [a["outcome"] for a in harness.attempts(ok_id)] == ["ok"]
    assert harness.depth(stranger) == (0, 1)  # still in flight: neither deleted nor moved
    assert harness.depth(work) == (0, 0)
    assert harness.depth(harness.dlq("work")) == (0, 0)


def test_fifo_group_waits_behind_its_failed_record_and_keeps_its_order(
    fifo_harness: Harness,
) -> None:
    h = fifo_harness
    orders = h.work("orders")
    first_id, first = _job("test.flaky", {"succeed_on_attempt": 2})
    second_id, second = _job("test.record", {"label": "second"})
    third_id, third = _job("test.record", {"label": "third"})
    other_id, other = _job("test.record", {"label": "another group"})
    sent = {}
    for key, body, group in [
        ("first", first, "g1"),
        ("other", other, "g2"),
        ("second", second, "g1"),
        ("third", third, "g1"),
    ]:
        sent[key] = h.send(
            orders, body, MessageGroupId=group, MessageDeduplicationId=uuid.uuid4().hex
        )
    messages = h.receive(orders, 4)

    failed = h.invoke(orders, messages)

    # The failure blocks the rest of its group (reported, not run); the other group ran.
    assert sorted(failed) == sorted([sent["first"], sent["second"], sent["third"]])
    assert [a["outcome"] for a in h.attempts(first_id)] == ["failed"]
    assert h.attempts(second_id) == h.attempts(third_id) == []
    assert [a["outcome"] for a in h.attempts(other_id)] == ["ok"]

    # The skipped records were made visible again at once, but SQS holds the group
    # until its first record has waited out its backoff; then all three come back
    # together, in order — long before our receive's own visibility timeout.
    def probe() -> list[dict[str, Any]] | None:
        got = h.receive_now(orders)
        assert not got or got[0]["MessageId"] == sent["first"]
        return got or None

    again = eventually(probe, what="the FIFO group to be delivered again")
    assert [m["MessageId"] for m in again] == [sent["first"], sent["second"], sent["third"]]
    assert [_receive_count(m) for m in again] == [2, 2, 2]

    assert h.invoke(orders, again) == []
    assert [a["outcome"] for a in h.attempts(first_id)] == ["failed", "ok"]
    runs = [h.attempts(job_id) for job_id in (first_id, second_id, third_id)]
    assert [r[-1]["attempt"] for r in runs] == [2, 2, 2]
    assert runs[0][-1]["at"] <= runs[1][-1]["at"] <= runs[2][-1]["at"]
    assert h.depth(orders) == (0, 0)
    assert h.depth(h.dlq("orders")) == (0, 0)


def test_a_failed_dlq_write_or_visibility_change_still_reports_the_record(
    harness: Harness,
) -> None:
    work = harness.work("work")
    harness.sqs.delete_queue(QueueUrl=harness.dlq("work").url)
    doomed_id, doomed_body = _job("test.permanent", {"label": "doomed"})
    flaky_id, flaky_body = _job("test.flaky", {"succeed_on_attempt": 2})
    sent = {"doomed": harness.send(work, doomed_body), "flaky": harness.send(work, flaky_body)}
    messages = {m["MessageId"]: m for m in harness.receive(work, 2)}
    # A receipt handle SQS no longer honours (as after the message's visibility expired).
    messages[sent["flaky"]]["ReceiptHandle"] = "expired-receipt-handle"

    with capture_logs() as events:
        failed = harness.invoke(work, list(messages.values()))

    # Both ran, neither could be dealt with: both stay in the queue, nothing is lost.
    assert sorted(failed) == sorted(sent.values())
    problems = {e["event"]: e for e in events if e["log_level"] in ("warning", "error")}
    assert problems["job.dead_letter_failed"]["job_id"] == doomed_id
    assert problems["sqs.change_visibility_failed"]["job_id"] == flaky_id
    assert [a["outcome"] for a in harness.attempts(doomed_id)] == ["failed"]
    assert [a["outcome"] for a in harness.attempts(flaky_id)] == ["failed"]
    assert harness.depth(work) == (0, 2)
