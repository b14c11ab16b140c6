"""The Lambda adapter's pure parts: record conversion, FIFO short-circuit, the entry point."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs

from infra.envelope import encode, make_envelope
from infra.topology import TopologyError
from tests import REPO
from workers import lambda_adapter
from workers.lambda_adapter import (
    Record,
    fifo_group,
    lambda_handler,
    queue_name_from_arn,
    record_to_message,
    run_batch,
)

PIPELINE = REPO / "tests" / "fixtures" / "pipeline.yaml"
STANDARD_ARN = "arn:aws:sqs:us-east-1:123456789012:ct-unit-work"
FIFO_ARN = "arn:aws:sqs:us-east-1:123456789012:ct-unit-orders.fifo"


def lambda_record(
    message_id: str, *, arn: str = STANDARD_ARN, group: str | None = None, body: str = "{}"
) -> dict[str, Any]:
    """A record shaped like the ones in Lambda's SQS events."""
    attributes = {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1767225600000",
        "SenderId": "AIDAEXAMPLE",
        "ApproximateFirstReceiveTimestamp": "1767225600100",
    }
    if group is not None:
        attributes |= {
            "MessageGroupId": group,
            "MessageDeduplicationId": f"dedup-{message_id}",
            "SequenceNumber": "18849496460467696128",
        }
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": body,
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }


# -- record → SQS API message ---------------------------------------------------------------


def test_record_becomes_the_message_receive_message_returns() -> None:
    record = lambda_record("m-1", arn=FIFO_ARN, group="g1", body='{"id": "j-1"}')
    record["messageAttributes"] = {
        "tenant": {
            "stringValue": "acme",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "count": {
            "stringValue": "3",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number.int",
        },
        "blob": {
            "binaryValue": base64.b64encode(b"\x00\xff").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }

    message = record_to_message(record)

    assert message == {
        "MessageId": "m-1",
        "ReceiptHandle": "handle-m-1",
        "Body": '{"id": "j-1"}',
        "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "Attributes": record["attributes"],
        "MessageAttributes": {
            "tenant": {"DataType": "String", "StringValue": "acme"},
            "count": {"DataType": "Number.int", "StringValue": "3"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
        },
    }
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert message["Attributes"]["MessageGroupId"] == "g1"


def test_record_with_list_values_and_without_optional_fields() -> None:
    record = {
        "messageId": "m-2",
        "body": "",
        "messageAttributes": {
            "tags": {
                "stringListValues": ["a", "b"],
                "binaryListValues": [base64.b64encode(b"x").decode()],
                "dataType": "String",
            }
        },
    }

    message = record_to_message(record)

    assert message == {
        "MessageId": "m-2",
        "ReceiptHandle": "",
        "Body": "",
        "Attributes": {},
        "MessageAttributes": {
            "tags": {
                "DataType": "String",
                "StringListValues": ["a", "b"],
                "BinaryListValues": [b"x"],
            }
        },
    }


def test_queue_name_is_the_last_part_of_the_arn() -> None:
    assert queue_name_from_arn(STANDARD_ARN) == "ct-unit-work"
    assert queue_name_from_arn(FIFO_ARN) == "ct-unit-orders.fifo"


def test_only_fifo_queues_have_ordered_groups() -> None:
    assert fifo_group(lambda_record("m", arn=FIFO_ARN, group="g1")) == (FIFO_ARN, "g1")
    # A standard (fair) queue's MessageGroupId promises no order.
    assert fifo_group(lambda_record("m", group="g1")) is None
    assert fifo_group(lambda_record("m")) is None


# -- the batch and its FIFO short-circuit -----------------------------------------------


class FakeRunner:
    """Succeeds for every record except the ``failing`` ones; remembers what it ran."""

    def __init__(self, *failing: str) -> None:
        self.failing = set(failing)
        self.ran: list[str] = []

    def __call__(self, record: Record) -> bool:
        self.ran.append(record["messageId"])
        return record["messageId"] not in self.failing


def test_standard_batch_reports_exactly_the_failed_records() -> None:
    records = [lambda_record(m) for m in ("a", "b", "c", "d")]
    runner = FakeRunner("b", "d")

    result = run_batch(records, runner)

    assert runner.ran == ["a", "b", "c", "d"]
    assert result.failed == ["b", "d"]
    assert result.skipped == []
    assert result.response() == {
        "batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "d"}]
    }


def test_all_succeeded_is_an_empty_failure_list() -> None:
    result = run_batch([lambda_record("a")], FakeRunner())
    assert result.response() == {"batchItemFailures": []}


def test_fifo_failure_skips_the_rest_of_its_group_only() -> None:
    records = [
        lambda_record("g1-1", arn=FIFO_ARN, group="g1"),
        lambda_record("g2-1", arn=FIFO_ARN, group="g2"),
        lambda_record("g1-2", arn=FIFO_ARN, group="g1"),
        lambda_record("g2-2", arn=FIFO_ARN, group="g2"),
        lambda_record("g1-3", arn=FIFO_ARN, group="g1"),
        lambda_record("g2-3", arn=FIFO_ARN, group="g2"),
    ]
    runner = FakeRunner("g1-2", "g2-3")

    result = run_batch(records, runner)

    # g1 fails at its second record: its third is not run. g2 runs up to its failure.
    assert runner.ran == ["g1-1", "g2-1", "g1-2", "g2-2", "g2-3"]
    assert result.failed == ["g1-2", "g1-3", "g2-3"]
    assert [r["messageId"] for r in result.skipped] == ["g1-3"]


def test_fifo_failure_of_the_first_record_skips_its_whole_group() -> None:
    records = [lambda_record(f"m{i}", arn=FIFO_ARN, group="g") for i in range(4)]
    runner = FakeRunner("m0")

    result = run_batch(records, runner)

    assert runner.ran == ["m0"]
    assert result.failed == ["m0", "m1", "m2", "m3"]
    assert [r["messageId"] for r in result.skipped] == ["m1", "m2", "m3"]


def test_standard_queue_records_with_a_group_id_are_not_skipped() -> None:
    records = [lambda_record(m, group="g") for m in ("a", "b", "c")]
    runner = FakeRunner("a")

    result = run_batch(records, runner)

    assert runner.ran == ["a", "b", "c"]
    assert result.failed == ["a"]
    assert result.skipped == []


def test_same_group_id_on_two_fifo_queues_are_different_groups() -> None:
    other_arn = FIFO_ARN.replace("orders", "invoices")
    records = [
        lambda_record("a", arn=FIFO_ARN, group="g"),
        lambda_record("b", arn=other_arn, group="g"),
    ]
    runner = FakeRunner("a")

    assert run_batch(records, runner).failed == ["a"]
    assert runner.ran == ["a", "b"]


# -- the entry point (no AWS calls: successes and unknown queues need none) ------------------


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CONVEYOR_* settings for the test topology, and a fresh adapter cache."""
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(PIPELINE))
    monkeypatch.setenv("CONVEYOR_ENVIRONMENT", "unit")
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.setattr(lambda_adapter, "_adapter", None)
    return tmp_path


def test_handler_runs_jobs_and_reports_records_of_unknown_queues(configured: Path) -> None:
    envelope = make_envelope("test.record", {"label": "hi"})
    records = [
        lambda_record("ok", body=encode(envelope)),
        lambda_record("lost", arn="arn:aws:sqs:us-east-1:123456789012:someone-elses"),
    ]

    with capture_logs() as events:
        response = lambda_handler({"Records": records}, SimpleNamespace(aws_request_id="r-1"))

    assert response == {"batchItemFailures": [{"itemIdentifier": "lost"}]}
    assert (configured / f"{envelope.id}.jsonl").exists()  # the handler ran
    [unknown] = [e for e in events if e["event"] == "lambda.unknown_queue"]
    assert unknown["log_level"] == "error"
    assert unknown["event_source_arn"].endswith(":someone-elses")


def test_handler_with_an_empty_event_reports_nothing(configured: Path) -> None:
    assert lambda_handler({"Records": []}, None) == {"batchItemFailures": []}


def test_adapter_is_built_once_per_configuration(
    configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = lambda_adapter.current_adapter()
    assert lambda_adapter.current_adapter() is first
    assert first.topology.environment == "unit"

    monkeypatch.setenv("CONVEYOR_ENVIRONMENT", "other")
    second = lambda_adapter.current_adapter()
    assert second is not first
    assert second.topology.environment == "other"


def test_broken_topology_fails_the_invocation(
    configured: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "queues.yaml"
    broken.write_text(
        PIPELINE.read_text().replace("tests.jobs:record", "tests.jobs:no_such_handler")
    )
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(broken))

    with pytest.raises(TopologyError, match="no_such_handler"):
        lambda_handler({"Records": [lambda_record("m")]}, None)


def test_importing_workers_does_not_load_the_adapter() -> None:
    code = (
        "import sys, workers\n"
        "assert 'workers.lambda_adapter' not in sys.modules\n"
        "assert 'boto3' not in sys.modules\n"
        "from workers.lambda_adapter import lambda_handler\n"
        "assert workers.lambda_handler is lambda_handler\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
