"""The AWS request budget of a job at backlog, counted on the real emulator (not timed).

Issue 8's target: at most 0.35 SNS+SQS requests per job when the queue has a
backlog — PublishBatch (10 per call) in, ReceiveMessage (10 per call) and
DeleteMessageBatch (10 per call) out, plus a node's start-up calls. The counts do
not depend on this machine's speed: the whole backlog is published before the node
starts (so every receive finds 10 messages), and the node sends deletes only in
full batches and at shutdown (``CONVEYOR_ACK_FLUSH_INTERVAL_S`` is long).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from infra import aws
from infra.envelope import encode, make_envelope
from infra.provision import apply
from infra.topology import load_topology
from tests import REPO
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from tests.support.processes import Worker
from tests.support.queues import depth, visible_in_flight

pytestmark = pytest.mark.e2e

TOPOLOGY = Path(__file__).with_name("budget.yaml")
JOBS = 200
MAX_REQUESTS_PER_JOB = 0.35


def _stopped_event(log: Path) -> dict[str, Any]:
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"worker.stopped"' in line:
            event: dict[str, Any] = json.loads(line)
            return event
    raise AssertionError(f"no worker.stopped event in {log}:\n{log.read_text()[-2000:]}")


def _sns_sqs(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if k.startswith(("sqs.", "sns.")))


def test_a_job_at_backlog_costs_at_most_0_35_requests(
    aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    # Deletes go only in full batches of 10 and at shutdown: the count does not
    # depend on how fast this machine runs the jobs.
    monkeypatch.setenv("CONVEYOR_ACK_FLUSH_INTERVAL_S", "600")
    topology = load_topology(TOPOLOGY)
    apply(topology)
    sqs, sns = aws.client("sqs"), aws.client("sns")
    topic_arn = sns.create_topic(Name=topology.topic_name("jobs"))["TopicArn"]
    url = sqs.get_queue_url(QueueName=topology.queue_name("work"))["QueueUrl"]

    # Publish the backlog as the producer API does: PublishBatch, 10 jobs a call.
    ids, publish_calls = [], 0
    for start in range(0, JOBS, 10):
        entries = []
        for i in range(start, start + 10):
            envelope = make_envelope("test.flaky", {"succeed_on_attempt": 1})
            ids.append(envelope.id)
            entries.append({"Id": str(i), "Message": encode(envelope)})
        response = sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries)
        assert not response.get("Failed"), response
        publish_calls += 1
    assert depth(url).visible == JOBS

    node = Worker("main", env=dict(os.environ), log_dir=tmp_path, name="worker")
    log = node.log
    try:
        eventually(
            lambda: sum(1 for _ in outbox.iterdir()) >= JOBS or not node.alive,
            what=f"the node to run {JOBS} jobs",
        )
        assert node.alive, node.text()[-2000:]
        node.terminate()  # drain, flush the last deletes, log the counts
        assert node.wait(timeout_s=60) == 0
    finally:
        node.close()

    assert sorted(p.stem for p in outbox.iterdir()) == sorted(ids)
    for path in outbox.iterdir():  # each ran once
        assert len(path.read_text().splitlines()) == 1
    assert visible_in_flight(url) == (0, 0)

    worker = _stopped_event(log)["aws_requests"]
    # Receives of 10: one per 10 jobs, plus the polls that found the queue empty.
    assert worker.get("sqs.ReceiveMessage", 0) <= JOBS // 10 + 3, worker
    assert worker.get("sqs.DeleteMessage", 0) == 0, worker
    assert worker.get("sqs.DeleteMessageBatch", 0) <= JOBS // 10 + 1, worker
    total = publish_calls + _sns_sqs(worker)
    assert total / JOBS <= MAX_REQUESTS_PER_JOB, (
        f"{total / JOBS:.3f} requests per job: publish {publish_calls}, worker {worker}"
    )
