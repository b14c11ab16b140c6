"""The API encodes each job's envelope once: the size checks and the publish share the JSON."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra import aws
from infra.claim_check import ClaimCheck
from infra.envelope import Envelope, decode
from infra.provision import apply
from infra.topology import Topology, load_topology
from producers.enqueue import Enqueuer, Job
from producers.publisher import Publisher
from tests import REPO

EMAIL = {"to": "bob@example.com", "subject": "hi"}


@pytest.fixture
def topology(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> Topology:
    monkeypatch.setenv("CONVEYOR_AWS_ACCOUNT_ID", "123456789012")
    topology = load_topology(REPO / "queues.yaml", environment="unit")
    apply(topology)
    return topology


@pytest.fixture
def encodings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The id of every envelope serialised from now on, once per serialisation."""
    seen: list[str] = []
    dump = Envelope.model_dump_json

    def counting(self: Envelope, **kwargs: Any) -> str:
        seen.append(self.id)
        return dump(self, **kwargs)

    monkeypatch.setattr(Envelope, "model_dump_json", counting)
    return seen


@pytest.fixture
def enqueuer(topology: Topology) -> Iterator[Enqueuer]:
    publisher = Publisher(topology)
    enqueuer = Enqueuer(topology, publisher, offloader=ClaimCheck(topology))
    yield enqueuer
    enqueuer.close()
    publisher.close()


@pytest.mark.parametrize("jobs", [1, 12])  # Publish, and PublishBatch in two calls
def test_each_envelope_is_encoded_once_with_the_claim_check_on(
    enqueuer: Enqueuer, encodings: list[str], jobs: int
) -> None:
    outcomes = enqueuer.run(
        [Job(i, "email.send", EMAIL) for i in range(jobs)], traceparent=None, scope="test"
    )
    assert [o.status for o in outcomes] == [202] * jobs
    assert sorted(encodings) == sorted(o.job_id for o in outcomes if o.job_id)


def test_the_published_body_is_the_envelope(topology: Topology, enqueuer: Enqueuer) -> None:
    sqs = aws.client("sqs")
    queue = topology.queues_receiving("email.send")[0]
    url = sqs.get_queue_url(QueueName=topology.queue_name(queue))["QueueUrl"]
    [outcome] = enqueuer.run([Job(0, "email.send", EMAIL)], traceparent=None, scope="test")
    [received] = sqs.receive_message(QueueUrl=url)["Messages"]
    envelope = decode(received["Body"])
    assert (envelope.id, envelope.data) == (outcome.job_id, EMAIL)
