"""The consumer boundary (workers/intake.py): a message is a job or a refusal, never a crash."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor import JobContext
from infra.envelope import MAX_JSON_DEPTH, Envelope, EnvelopeError, decode, load_json
from infra.topology import load_topology
from tests import REPO
from workers import intake
from workers.intake import Refusal, read_job
from workers.lambda_adapter import read_record
from workers.runner import JobRunner

PIPELINE = REPO / "tests" / "fixtures" / "pipeline.yaml"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[" * 1_200 + "]" * 1_200, "too_deep"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "too_deep"),
        ('{"specversion":"1.0","id":"x","type":"t","data":' + "[" * 5_000 + "}", "too_deep"),
        ("x" * (1024 * 1024 + 1), "too_large"),
        ('{"specversion":"1.0","id":"x","type":"t","data":' + "9" * 5_000 + "}", "invalid_json"),
        ('{"specversion":"1.0","id":"\\ud800","type":"t"}', "invalid_envelope"),
        (
            '{"specversion":"1.0","id":"x","type":"t","datacontenttype":"text/plain",'
            '"data_base64":"aGk="}',
            "unsupported_content_type",
        ),
    ],
)
def test_hostile_bodies_are_refused_with_a_reason(body: str, reason: str) -> None:
    read = read_job({"Body": body})
    assert isinstance(read, Refusal)
    assert read.reason == reason, read.error


def test_nesting_at_the_limit_still_reads() -> None:
    depth = MAX_JSON_DEPTH - 1  # plus the envelope object itself
    body = '{"specversion":"1.0","id":"x","type":"t","data":' + "[" * depth + "]" * depth + "}"
    assert isinstance(read_job({"Body": body}), Envelope)
    # Brackets inside strings are not nesting.
    assert load_json(json.dumps({"s": "[" * 5_000})) == {"s": "[" * 5_000}


@pytest.mark.parametrize(
    ("raised", "reason"),
    [(RecursionError(), "too_deep"), (MemoryError(), "too_large"), (TypeError("x"), "undecodable")],
)
def test_any_exception_while_decoding_is_a_refusal(
    monkeypatch: pytest.MonkeyPatch, raised: BaseException, reason: str
) -> None:
    def broken(body: str | bytes) -> Envelope:
        raise raised

    monkeypatch.setattr(intake, "decode", broken)
    read = read_job({"Body": "{}"})
    assert read == Refusal(reason, raised)


def test_a_foreign_event_without_time_or_conveyorversion_reads() -> None:
    env = decode('{"specversion":"1.0","id":"x","type":"t","source":"urn:a","ext":"v"}')
    assert env.time is None
    assert env.conveyorversion == 1
    assert env.model_extra == {"ext": "v"}


@pytest.mark.parametrize(
    "field",
    [
        '"time":"yesterday"',
        '"time":"2026-01-01"',
        '"datacontenttype":"json"',
        '"dataschema":"no scheme"',
        '"subject":""',
        '"conveyorversion":0',
    ],
)
def test_optional_attributes_are_checked_when_present(field: str) -> None:
    with pytest.raises(EnvelopeError):
        decode('{"specversion":"1.0","id":"x","type":"t",' + field + "}")


def _seen(payload: Any, ctx: JobContext) -> None:
    _SEEN.append(ctx)


_SEEN: list[JobContext] = []


def test_without_time_the_handler_sees_when_sqs_got_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    runner = JobRunner(load_topology(PIPELINE, environment="unit"), ["work"], hooks=())
    body = json.dumps(
        {"specversion": "1.0", "id": "j1", "type": "test.record", "data": {"label": "a"}}
    )
    message = {"MessageId": "m", "Body": body, "Attributes": {"SentTimestamp": "1767225600000"}}
    monkeypatch.setitem(runner._handlers, ("work", "test.record"), _seen)
    outcome = runner.run(message, "work", refusal=None)
    assert outcome.kind == "succeeded", outcome
    assert _SEEN[-1].enqueued_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_lambda_record_with_broken_attributes_is_dead_lettered_not_retried() -> None:
    record = {
        "messageId": "m1",
        "receiptHandle": "rh",
        "body": "{not json either",
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {"b": {"dataType": "Binary", "binaryValue": "!!not base64!!"}},
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
    }
    message, refusal = read_record(record)
    assert refusal is not None
    assert refusal.reason == "undecodable"
    assert message["Body"] == record["body"]
    runner = JobRunner(
        load_topology(PIPELINE, environment="unit"), ["work"], hooks=(), rng=random.Random(1)
    )
    outcome = runner.run(message, "work", refusal=refusal)
    assert outcome.kind == "dead_letter"
    assert outcome.failure is not None
    assert outcome.failure.reason == "undecodable"
    assert outcome.failure.attempts == 1
