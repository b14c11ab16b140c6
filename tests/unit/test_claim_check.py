"""The claim check: offload above the threshold, resolve in the worker, and the runner's outcomes.

moto in process (unit tests); the end-to-end round trip through the API and a real
worker is in tests/e2e/test_storage.py.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from infra import aws
from infra.claim_check import (
    ClaimCheck,
    ClaimCheckError,
    PayloadUnavailableError,
    claim_check_for,
    parse_dataref,
)
from infra.envelope import Envelope, decode, encode, make_envelope
from infra.topology import Topology, load_topology
from ops.dlq.redrive import stamp_redrive
from tests import REPO
from workers.hooks import Job, Proceed
from workers.outcome import Outcome
from workers.runner import JobRunner

ACCOUNT = "123456789012"
BUCKET = f"ct-unit-payloads-{ACCOUNT}-us-east-1"


@pytest.fixture
def topology() -> Topology:
    topology = load_topology(REPO / "tests" / "fixtures" / "pipeline.yaml", environment="unit")
    payloads = topology.payloads.model_copy(update={"claim_check_threshold_bytes": 1024})
    return topology.model_copy(update={"payloads": payloads})


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "CONVEYOR_AWS_ACCOUNT_ID": ACCOUNT,
    }.items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    with mock_aws():
        aws.client("s3").create_bucket(Bucket=BUCKET)
        yield
    aws.reset_clients()


def _big(label: str = "big") -> dict[str, Any]:
    return {"label": label + "é" * 2000}  # non-ASCII: sizes are counted in UTF-8 bytes


def test_a_small_envelope_is_left_alone(topology: Topology) -> None:
    envelope = make_envelope("test.record", {"label": "small"})
    # No S3 call, not even the account lookup: nothing is configured for S3 here.
    assert claim_check_for(topology).offload(envelope) is envelope


def test_a_large_payload_goes_to_s3_and_resolves_to_the_original(
    topology: Topology, s3: None
) -> None:
    check = claim_check_for(topology)
    envelope = make_envelope("test.record", _big())
    assert len(encode(envelope).encode()) > check.threshold_bytes
    sent = check.offload(envelope)
    assert sent.dataref == f"s3://{BUCKET}/test.record/{envelope.id}.json"
    wire = json.loads(encode(sent))
    assert "data" not in wire
    assert len(encode(sent).encode()) < check.threshold_bytes
    assert (sent.id, sent.traceparent) == (envelope.id, envelope.traceparent)
    # The worker side, from the wire: the original data.
    assert check.resolve(decode(encode(sent))) == _big()
    head = aws.client("s3").head_object(Bucket=BUCKET, Key=f"test.record/{envelope.id}.json")
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"job-id": envelope.id, "job-type": "test.record"}


def test_an_expired_payload_is_unavailable_for_good(topology: Topology, s3: None) -> None:
    check = claim_check_for(topology)
    sent = check.offload(make_envelope("test.record", _big()))
    assert sent.dataref is not None
    bucket, key = parse_dataref(sent.dataref)
    aws.client("s3").delete_object(Bucket=bucket, Key=key)
    with pytest.raises(PayloadUnavailableError, match="does not exist") as caught:
        check.resolve(sent)
    assert caught.value.reason == "payload_missing"


@pytest.mark.parametrize(
    "dataref", ["https://example.com/x", "s3://", "s3://bucket-only", "s3://other-bucket/k.json"]
)
def test_a_dataref_that_is_not_ours_is_refused_without_a_fetch(
    topology: Topology, dataref: str
) -> None:
    envelope = make_envelope("test.record", None).model_copy(update={"dataref": dataref})
    with pytest.raises(PayloadUnavailableError) as caught:
        claim_check_for(topology).resolve(envelope)
    assert caught.value.reason == "invalid_dataref"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3_unreachable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{_closed_port()}")
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "CONVEYOR_AWS_ACCOUNT_ID": ACCOUNT,
    }.items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    yield
    aws.reset_clients()


def test_s3_unreachable_is_a_transient_error(topology: Topology, s3_unreachable: None) -> None:
    check = ClaimCheck(topology)
    with pytest.raises(ClaimCheckError) as offloading:
        check.offload(make_envelope("test.record", _big()))
    assert not isinstance(offloading.value, PayloadUnavailableError)
    envelope = make_envelope("test.record", None, job_id="x").model_copy(
        update={"dataref": f"s3://{BUCKET}/test.record/x.json"}
    )
    with pytest.raises(ClaimCheckError) as resolving:
        check.resolve(envelope)
    assert not isinstance(resolving.value, PayloadUnavailableError)


# -- the runner ------------------------------------------------------------------------


def _message(envelope: Envelope, attempt: int = 1) -> dict[str, Any]:
    return {
        "MessageId": "m-1",
        "Body": encode(envelope),
        "Attributes": {"ApproximateReceiveCount": str(attempt)},
    }


@pytest.fixture
def runner(topology: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobRunner:
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    return JobRunner(topology, ["work"], rng=random.Random(1))


def test_the_runner_fetches_the_payload_before_the_handler(
    topology: Topology, runner: JobRunner, s3: None, tmp_path: Path
) -> None:
    sent = claim_check_for(topology).offload(make_envelope("test.record", _big()))
    outcome = runner.run(_message(sent), "work")
    assert outcome.kind == "succeeded"
    assert (tmp_path / f"{sent.id}.jsonl").exists()  # the handler ran: the payload validated


def test_the_runner_dead_letters_a_missing_payload(
    topology: Topology, runner: JobRunner, s3: None
) -> None:
    envelope = make_envelope("test.record", None, job_id="gone").model_copy(
        update={"dataref": f"s3://{BUCKET}/test.record/gone.json"}
    )
    outcome = runner.run(_message(envelope), "work")
    assert outcome.kind == "dead_letter"
    assert outcome.failure is not None
    assert outcome.failure.reason == "payload_missing"
    assert "does not exist" in outcome.failure.error_message


def test_the_runner_retries_when_s3_is_unreachable(
    topology: Topology, runner: JobRunner, s3_unreachable: None
) -> None:
    envelope = make_envelope("test.record", None, job_id="x").model_copy(
        update={"dataref": f"s3://{BUCKET}/test.record/x.json"}
    )
    outcome = runner.run(_message(envelope), "work")
    assert (outcome.kind, outcome.error_type, outcome.delay_s) == ("retry", "ClaimCheckError", 1)
    last = runner.run(_message(envelope, attempt=3), "work")  # work allows 3 attempts
    assert last.failure is not None
    assert last.failure.reason == "attempts_exhausted"


def test_a_redriven_job_keeps_its_dataref_and_hooks_see_the_redrive(
    topology: Topology, s3: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    sent = claim_check_for(topology).offload(make_envelope("test.record", _big()))
    body = stamp_redrive(encode(sent), datetime.now(UTC))  # what `conveyor dlq redrive` sends
    assert decode(body).dataref == sent.dataref
    seen: list[Job] = []

    def spy(job: Job, proceed: Proceed) -> Outcome:
        seen.append(job)
        return proceed()

    runner = JobRunner(topology, ["work"], hooks=(spy,))
    message = {"MessageId": "m-2", "Body": body, "Attributes": {"ApproximateReceiveCount": "1"}}
    assert runner.run(message, "work").kind == "succeeded"
    assert [(j.job_id, j.redrives) for j in seen] == [(sent.id, 1)]
