"""End to end: the idempotency guard in a real worker process, against the real emulator.

tests/fixtures/guard.yaml has the pipeline's shape with ``idempotency_guard: true``
on ``test.once``; ``test.record`` runs the same recording handler unguarded.
`local_system` applies the topology (which creates the guard's DynamoDB table)
and starts the API and the worker as separate processes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.system import local_system
from infra import aws
from infra.envelope import encode, make_envelope
from infra.topology import load_topology
from tests import REPO
from tests.e2e.test_pipeline import Pipeline
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from workers.idempotency import DynamoSuccessStore

pytestmark = pytest.mark.e2e

TOPOLOGY = REPO / "tests" / "fixtures" / "guard.yaml"


@dataclass
class Guarded:
    """The running system, its worker's log and the guard's store."""

    pipeline: Pipeline
    worker_log: Path
    store: DynamoSuccessStore

    def send(self, queue: str, body: str) -> None:
        aws.client("sqs").send_message(QueueUrl=self.pipeline.url(queue), MessageBody=body)

    def skipped(self, job_id: str) -> list[dict[str, Any]]:
        """The worker's ``job.skipped_duplicate`` events for ``job_id``."""
        if not self.worker_log.exists():
            return []
        events = []
        for line in self.worker_log.read_text().splitlines():
            if '"job.skipped_duplicate"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if event.get("job_id") == job_id:
                events.append(event)
        return events

    def runs(self, job_id: str, count: int) -> list[dict[str, Any]] | None:
        """The handler's runs of ``job_id`` once there are ``count`` of them."""
        runs = self.pipeline.attempts(job_id)
        return runs if len(runs) == count else None

    def drained(self, queue: str) -> bool:
        return self.pipeline.depth(self.pipeline.url(queue)) == (0, 0, 0)


@pytest.fixture
def guarded(aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Guarded]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # worker processes import tests.jobs
    topology = load_topology(TOPOLOGY)
    with local_system(topology, use_emulator=False, log_dir=tmp_path) as system:
        yield Guarded(
            Pipeline(system, topology, outbox),
            tmp_path / "worker-main.log",
            DynamoSuccessStore(topology.resource_name("succeeded")),
        )


def test_duplicate_of_a_succeeded_job_is_skipped_and_deleted(guarded: Guarded) -> None:
    envelope = make_envelope("test.once", {"label": "once"})
    body = encode(envelope)

    guarded.send("work", body)
    eventually(
        lambda: guarded.store.succeeded("work", envelope.id),
        what="the first delivery's success to be recorded",
    )
    guarded.send("work", body)  # the same body: a redelivery or a redrive duplicate

    [skip] = eventually(lambda: guarded.skipped(envelope.id), what="the duplicate to be skipped")
    assert (skip["queue"], skip["job_type"]) == ("work", "test.once")
    eventually(lambda: guarded.drained("work"), what="both messages to be deleted")
    pipeline = guarded.pipeline
    assert pipeline.depth(pipeline.dlq_url("work")) == (0, 0, 0)
    runs = pipeline.attempts(envelope.id)
    assert [(r["queue"], r["attempt"], r["outcome"]) for r in runs] == [("work", 1, "ok")]


def test_unguarded_job_type_runs_every_delivery(guarded: Guarded) -> None:
    envelope = make_envelope("test.record", {"label": "twice"})
    body = encode(envelope)

    guarded.send("work", body)
    eventually(lambda: guarded.runs(envelope.id, 1), what="the first delivery to run")
    guarded.send("work", body)
    runs = eventually(lambda: guarded.runs(envelope.id, 2), what="the second delivery to run")
    assert [(r["queue"], r["outcome"]) for r in runs] == [("work", "ok")] * 2
    eventually(lambda: guarded.drained("work"), what="both messages to be deleted")
    assert guarded.skipped(envelope.id) == []
    assert guarded.store.succeeded("work", envelope.id) is False  # nothing recorded


def test_guarded_job_runs_once_on_each_queue_it_fans_out_to(guarded: Guarded) -> None:
    pipeline = guarded.pipeline
    job = pipeline.post("test.once", {"label": "fan-out"})
    assert sorted(job["queues"]) == ["audit", "work"]

    runs = eventually(lambda: guarded.runs(job["id"], 2), what="the job to run on both queues")
    assert sorted(r["queue"] for r in runs) == ["audit", "work"]
    # The guard is per queue: each queue's success is its own record.
    eventually(
        lambda: all(guarded.store.succeeded(q, job["id"]) for q in ("audit", "work")),
        what="both successes to be recorded",
    )
    for queue in ("audit", "work"):
        eventually(functools.partial(guarded.drained, queue), what=f"{queue} to drain")
    assert guarded.skipped(job["id"]) == []
