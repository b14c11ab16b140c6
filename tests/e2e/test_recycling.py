"""Recycling with real worker processes on the emulator: job processes are replaced, no job
is lost or run twice (tests/fixtures/recycling.yaml: max_jobs_per_child per pool)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra import aws
from infra.envelope import encode, make_envelope
from infra.errors import EXIT_RECYCLED
from infra.provision import apply
from infra.topology import Topology, load_topology
from tests import REPO
from tests.support import outbox as handler_outbox
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from tests.support.processes import Worker
from tests.support.queues import drained, queue_url

pytestmark = pytest.mark.e2e

TOPOLOGY = REPO / "tests" / "fixtures" / "recycling.yaml"
#: The job type each queue (and pool) of the topology runs.
JOB_TYPES = {"forks": "test.fork", "threads": "test.thread", "solo": "test.solo"}


@dataclass
class Recycling:
    topology: Topology
    outbox: Path
    env: dict[str, str]
    log_dir: Path
    nodes: list[Worker] = field(default_factory=list)

    def node(self, pool: str, name: str) -> Worker:
        node = Worker(
            pool, env={**self.env, "CONVEYOR_TEST_NODE": name}, log_dir=self.log_dir, name=name
        )
        self.nodes.append(node)
        node.wait_ready()
        return node

    def send(self, queue: str, job_type: str, count: int) -> list[str]:
        url = queue_url(self.topology, queue)
        ids: list[str] = []
        for start in range(0, count, 10):
            envelopes = [
                make_envelope(job_type, {"label": f"job-{i}"})
                for i in range(start, min(start + 10, count))
            ]
            ids += [e.id for e in envelopes]
            aws.client("sqs").send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "MessageBody": encode(e)} for i, e in enumerate(envelopes)],
            )
        return ids

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        return handler_outbox.runs(self.outbox, job_id)

    def all_ran(self, ids: list[str]) -> bool:
        return all(self.runs(i) for i in ids)


@pytest.fixture
def recycling(
    aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Recycling]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    topology = load_topology(TOPOLOGY)
    apply(topology)
    rc = Recycling(topology, outbox, dict(os.environ), tmp_path)
    yield rc
    for node in rc.nodes:
        node.close()


def _stopped_event(node: Worker) -> dict[str, Any]:
    for line in node.text().splitlines():
        if line.startswith("{") and '"worker.stopped"' in line:
            event: dict[str, Any] = json.loads(line)
            return event
    raise AssertionError(f"no worker.stopped event in {node.log}")


def test_prefork_children_are_replaced_every_50_jobs_and_each_job_runs_once(
    recycling: Recycling,
) -> None:
    jobs = 500
    node = recycling.node("forks", "a")  # concurrency 2, max_jobs_per_child 50
    first_children = set(_children(node.pid))
    ids = recycling.send("forks", JOB_TYPES["forks"], jobs)

    eventually(lambda: recycling.all_ran(ids), timeout_s=300, what=f"all {jobs} jobs to run")
    url = queue_url(recycling.topology, "forks")
    eventually(lambda: drained(url), what="every message to be deleted")
    assert node.stop() == 0

    runs = {i: recycling.runs(i) for i in ids}
    assert all(len(r) == 1 and r[0]["outcome"] == "ok" for r in runs.values()), [
        (i, r) for i, r in runs.items() if len(r) != 1
    ]
    per_pid = Counter(r[0]["pid"] for r in runs.values())
    # No child ran more than its 50 jobs, so at least 500 / 50 different children ran.
    assert max(per_pid.values()) <= 50, per_pid
    assert len(per_pid) >= jobs // 50, per_pid
    assert not first_children.issuperset(per_pid)  # the children forked at start were replaced


@pytest.mark.parametrize("kind", ["threads", "solo"])
def test_a_node_pool_recycles_the_node_between_jobs_and_loses_none(
    recycling: Recycling, kind: str
) -> None:
    jobs = 30
    a = recycling.node(kind, f"{kind}-a")  # max_jobs_per_child 20: the node itself recycles
    ids = recycling.send(kind, JOB_TYPES[kind], jobs)

    assert a.wait(timeout_s=120) == EXIT_RECYCLED
    assert _stopped_event(a)["recycled"].startswith("20 jobs")
    ran_on_a = [i for i in ids if recycling.runs(i)]
    # The job that reached 20, plus at most the other slots' jobs in hand, which finish.
    concurrency = recycling.topology.pools[kind].concurrency
    assert 20 <= len(ran_on_a) <= 20 + concurrency - 1
    recycling.node(kind, f"{kind}-b")  # what the supervisor does after a recycle

    eventually(lambda: recycling.all_ran(ids), timeout_s=120, what=f"all {jobs} jobs to run")
    url = queue_url(recycling.topology, kind)
    eventually(lambda: drained(url), what="every message to be deleted")
    runs = {i: recycling.runs(i) for i in ids}
    assert all(len(r) == 1 and r[0]["outcome"] == "ok" for r in runs.values()), runs
    assert {r[0]["node"] for r in runs.values()} == {f"{kind}-a", f"{kind}-b"}
    # A job a received but never started runs on b at its second receive: the long poll
    # a left waiting on the emulator when it exited did not take the job for nobody.
    assert all(r[0]["attempt"] <= 2 for r in runs.values()), runs


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found
