"""A ``dataref`` is followed only to this job's object in this environment's bucket, size-capped.

S3 bucket names are global: anyone can create ``<prefix>-999999999999-eu-west-1``,
so the whole name must match (account and region included); the key must be the
one the producer writes for the job's type and id; an object above
``payloads.max_bytes`` is refused before it is read.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from infra import aws
from infra.aws.names import payload_bucket_name
from infra.claim_check import ClaimCheck, PayloadUnavailableError
from infra.envelope import Envelope, encode, make_envelope
from infra.failure import REASONS
from infra.topology import Topology, load_topology
from tests import REPO
from workers.runner import JobRunner

ACCOUNT = "123456789012"
REGION = "us-east-1"
MAX_BYTES = 2048


@pytest.fixture
def topology() -> Topology:
    topology = load_topology(REPO / "tests" / "fixtures" / "pipeline.yaml", environment="unit")
    payloads = topology.payloads.model_copy(
        update={"claim_check_threshold_bytes": 1024, "max_bytes": MAX_BYTES}
    )
    return topology.model_copy(update={"payloads": payloads})


@pytest.fixture
def s3(topology: Topology, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto in process with this environment's bucket; yields its name."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_MAX_ATTEMPTS": "1",
        "CONVEYOR_AWS_ACCOUNT_ID": ACCOUNT,
    }.items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    bucket = payload_bucket_name(topology, ACCOUNT, REGION)
    with mock_aws():
        aws.client("s3").create_bucket(Bucket=bucket)
        yield bucket
    aws.reset_clients()


def _put(bucket: str, key: str, body: bytes, *, create: bool = False) -> None:
    s3 = aws.client("s3")
    if create:
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def _referring(
    bucket: str, key: str, *, job_type: str = "test.record", job_id: str = "j1"
) -> Envelope:
    return make_envelope(job_type, None, job_id=job_id).model_copy(
        update={"dataref": f"s3://{bucket}/{key}"}
    )


def _reason(check: ClaimCheck, envelope: Envelope) -> str:
    with pytest.raises(PayloadUnavailableError) as caught:
        check.resolve(envelope)
    return caught.value.reason


def test_the_producers_own_reference_resolves(topology: Topology, s3: str) -> None:
    check = ClaimCheck(topology)
    sent = check.offload(make_envelope("test.record", {"label": "é" * 700}))
    assert sent.dataref is not None
    assert check.resolve(sent) == {"label": "é" * 700}


def test_a_lookalike_bucket_of_another_account_is_refused(topology: Topology, s3: str) -> None:
    # Same prefix, someone else's account: a name anyone could have registered.
    lookalike = payload_bucket_name(topology, "999999999999", "eu-west-1")
    assert lookalike.startswith(s3.rsplit(ACCOUNT, 1)[0])
    _put(lookalike, "test.record/j1.json", b'{"label": "planted"}', create=True)
    assert _reason(ClaimCheck(topology), _referring(lookalike, "test.record/j1.json")) == (
        "invalid_dataref"
    )


@pytest.mark.parametrize(
    "key",
    [
        "other.type/j1.json",  # another job type's payload
        "test.record/j2.json",  # another job's payload
        "test.record/j1.json.bak",
        "test.record/../other.type/j1.json",
        "j1.json",
    ],
)
def test_a_key_that_is_not_this_jobs_is_refused(topology: Topology, s3: str, key: str) -> None:
    _put(s3, key, b'{"label": "someone else\'s"}')
    assert _reason(ClaimCheck(topology), _referring(s3, key)) == "invalid_dataref"


def test_an_object_above_the_maximum_is_refused_unread(topology: Topology, s3: str) -> None:
    body = json.dumps({"label": "x" * MAX_BYTES}).encode()
    assert len(body) > MAX_BYTES
    _put(s3, "test.record/j1.json", body)
    check = ClaimCheck(topology)
    with pytest.raises(PayloadUnavailableError, match="max_bytes") as caught:
        check.resolve(_referring(s3, "test.record/j1.json"))
    assert caught.value.reason == "payload_too_large"


def test_an_object_of_exactly_the_maximum_resolves(topology: Topology, s3: str) -> None:
    padding = MAX_BYTES - len(json.dumps({"label": ""}).encode())
    body = json.dumps({"label": "x" * padding}).encode()
    assert len(body) == MAX_BYTES
    _put(s3, "test.record/j1.json", body)
    assert ClaimCheck(topology).resolve(_referring(s3, "test.record/j1.json")) == json.loads(body)


def test_the_runner_dead_letters_an_oversized_payload_with_a_known_reason(
    topology: Topology, s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    _put(s3, "test.record/j1.json", json.dumps({"label": "x" * MAX_BYTES}).encode())
    runner = JobRunner(topology, ["work"], rng=random.Random(1))
    message: dict[str, Any] = {
        "MessageId": "m-1",
        "Body": encode(_referring(s3, "test.record/j1.json")),
        "Attributes": {"ApproximateReceiveCount": "1"},
    }
    outcome = runner.run(message, "work")
    assert outcome.kind == "dead_letter"
    assert outcome.failure is not None
    assert outcome.failure.reason == "payload_too_large"
    assert outcome.failure.reason in REASONS
    assert not list(tmp_path.iterdir())  # the handler never ran
