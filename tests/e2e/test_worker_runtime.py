"""The worker runtime against a real moto server with real worker processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conveyor.system import local_system
from infra import aws
from infra.envelope import encode, make_envelope
from infra.provision import apply
from infra.topology import load_topology
from tests import REPO
from tests.conftest import AwsEnv
from tests.e2e.test_pipeline import eventually

pytestmark = pytest.mark.e2e

TOPOLOGY = REPO / "tests" / "fixtures" / "pipeline.yaml"


def worker_stopped_event(log_file: Path) -> dict[str, Any]:
    for line in log_file.read_text().splitlines():
        if line.startswith("{") and '"worker.stopped"' in line:
            event: dict[str, Any] = json.loads(line)
            return event
    raise AssertionError(f"no worker.stopped event in {log_file}")


def test_successes_are_deleted_in_batches_of_ten(
    aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = 50
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    # Only full batches and the shutdown flush send: the count then does not depend
    # on how fast this machine runs the jobs.
    monkeypatch.setenv("CONVEYOR_ACK_FLUSH_INTERVAL_S", "600")
    topology = load_topology(TOPOLOGY)
    apply(topology)
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=topology.queue_name("work"))["QueueUrl"]
    ids = []
    for start in range(0, jobs, 10):
        entries = []
        for i in range(start, start + 10):
            envelope = make_envelope("test.flaky", {"succeed_on_attempt": 1})
            ids.append(envelope.id)
            entries.append({"Id": str(i), "MessageBody": encode(envelope)})
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    with local_system(topology, use_emulator=False, log_dir=tmp_path):
        eventually(
            lambda: all((outbox / f"{i}.jsonl").exists() for i in ids),
            what=f"all {jobs} jobs to run",
        )
    # Stopped: the last partial batch was flushed on the way out.
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    requests = worker_stopped_event(tmp_path / "worker-main.log")["aws_requests"]
    deletes = requests.get("sqs.DeleteMessageBatch", 0) + requests.get("sqs.DeleteMessage", 0)
    assert requests.get("sqs.DeleteMessage", 0) == 0
    assert deletes <= jobs // 10 + 1, requests
    for i in ids:  # each ran exactly once
        assert len((outbox / f"{i}.jsonl").read_text().splitlines()) == 1
