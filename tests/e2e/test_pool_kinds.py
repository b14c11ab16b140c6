"""The threads and asyncio pools against a real moto server with real worker processes.

The behaviours the prefork pool is tested for (tests/e2e/test_worker_runtime.py,
test_pipeline.py): retries with backoff, dead letters with reasons, the heartbeat
on a job longer than the visibility timeout, SIGTERM drain with no job lost or
run twice, kill -9 redelivery, and ``max_runtime_s``. The same jobs run on both
pools (tests/fixtures/pools.yaml): ``tests.jobs`` handlers on the threads pool,
their ``async def`` twins (``tests.async_jobs``) on the asyncio pool.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra import aws
from infra.envelope import encode, make_envelope
from infra.errors import EXIT_RECYCLED
from infra.failure import Failure
from infra.provision import apply
from infra.topology import Topology, load_topology
from tests import REPO
from tests.support import outbox as handler_outbox
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from tests.support.processes import Worker
from tests.support.queues import dlq_url, peek_until, queue_url, visible_in_flight

pytestmark = pytest.mark.e2e

TOPOLOGY = REPO / "tests" / "fixtures" / "pools.yaml"
#: Pool -> the queue it consumes.
QUEUES = {"threads": "threaded", "aio": "looped", "solo": "single"}


@dataclass
class Pools:
    pool: str
    topology: Topology
    outbox: Path
    env: dict[str, str]
    log_dir: Path
    nodes: list[Worker] = field(default_factory=list)

    @property
    def queue(self) -> str:
        return QUEUES[self.pool]

    def node(self, name: str) -> Worker:
        """A worker node of the pool under test, once it consumes."""
        node = Worker(
            self.pool,
            env={**self.env, "CONVEYOR_TEST_NODE": name},
            log_dir=self.log_dir,
            name=f"{self.pool}-{name}",
        )
        self.nodes.append(node)
        node.wait_ready()
        return node

    def send(self, job_type: str, payload: dict[str, Any], count: int = 1) -> list[str]:
        ids = []
        url = queue_url(self.topology, self.queue)
        for _ in range(count):
            envelope = make_envelope(job_type, payload)
            aws.client("sqs").send_message(QueueUrl=url, MessageBody=encode(envelope))
            ids.append(envelope.id)
        return ids

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        return handler_outbox.runs(self.outbox, job_id)

    def outcomes(self, job_id: str) -> list[str]:
        return [r["outcome"] for r in self.runs(job_id)]

    def finished(self, job_id: str) -> bool:
        return handler_outbox.succeeded(self.outbox, job_id)

    def dead_letters(self, count: int) -> dict[str, Failure]:
        """Job id -> failure record of the first ``count`` messages in the queue's DLQ."""
        found = peek_until(dlq_url(self.topology, self.queue), count, what=f"{count} dead letters")
        records = {}
        for message in found:
            failure = Failure.from_message(message)
            assert failure is not None
            assert failure.job_id is not None
            records[failure.job_id] = failure
        return records

    def events(self, node: Worker, name: str) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for line in node.text().splitlines()
            if line.startswith("{") and f'"{name}"' in line
        ]


def setting_up(pool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pools:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    topology = load_topology(TOPOLOGY)
    apply(topology)
    return Pools(pool, topology, outbox, dict(os.environ), tmp_path)


@pytest.fixture(params=["threads", "aio"])
def pools(
    request: pytest.FixtureRequest, aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pools]:
    pk = setting_up(request.param, tmp_path, monkeypatch)
    yield pk
    for node in pk.nodes:
        node.close()


@pytest.fixture
def pool_of(
    aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Pools]]:
    """Set up the topology for one named pool (tests of one pool kind)."""
    made: list[Pools] = []

    def make(pool: str) -> Pools:
        made.append(setting_up(pool, tmp_path, monkeypatch))
        return made[-1]

    yield make
    for pk in made:
        for node in pk.nodes:
            node.close()


def test_failed_attempts_are_retried_with_backoff_until_they_succeed(pools: Pools) -> None:
    node = pools.node("a")
    [job_id] = pools.send("test.flaky", {"succeed_on_attempt": 3})

    eventually(lambda: pools.finished(job_id), timeout_s=60, what="the third attempt")
    assert pools.outcomes(job_id) == ["failed", "failed", "ok"]
    assert [r["attempt"] for r in pools.runs(job_id)] == [1, 2, 3]
    # Each failure was backed off by the queue's policy (base 1 s, max 2 s, no jitter).
    delays = [e["delay_s"] for e in pools.events(node, "job.retry_scheduled")]
    assert delays == [1, 2]


def test_failures_are_dead_lettered_with_their_reasons(pools: Pools) -> None:
    pools.node("a")
    [exhausted] = pools.send("test.fail", {"label": "x"})
    [permanent] = pools.send("test.permanent", {"label": "y"})

    records = pools.dead_letters(2)
    assert records[exhausted].reason == "attempts_exhausted"
    assert records[exhausted].error_type == "ValueError"
    assert records[exhausted].attempts == 3
    assert records[permanent].reason == "permanent_error"
    assert records[permanent].attempts == 1
    assert pools.outcomes(exhausted) == ["failed"] * 3
    assert pools.outcomes(permanent) == ["failed"]
    url = queue_url(pools.topology, pools.queue)
    eventually(lambda: visible_in_flight(url) == (0, 0), what="the source queue to empty")


@pytest.mark.parametrize("pool", ["threads", "aio", "solo"])
def test_a_job_three_times_longer_than_the_visibility_timeout_runs_once(
    pool_of: Callable[[str], Pools], pool: str
) -> None:
    # solo too: its job runs in the consumer loop's thread, which therefore cannot beat.
    pools = pool_of(pool)
    pools.node("a")
    pools.node("b")  # a second consumer that would take the message if it reappeared
    [job_id] = pools.send("test.sleep", {"seconds": 12})  # the visibility timeout is 4 s

    eventually(lambda: pools.finished(job_id), timeout_s=90, what="the long job to finish")
    runs = pools.runs(job_id)
    assert [r["outcome"] for r in runs] == ["started", "ok"]  # one attempt, never a second
    assert runs[0]["attempt"] == 1


def test_sigterm_finishes_jobs_in_hand_and_releases_the_rest(pools: Pools) -> None:
    a = pools.node("a")  # concurrency 2
    ids = pools.send("test.sleep", {"seconds": 3}, count=6)
    started = eventually(
        lambda: (s := [i for i in ids if pools.runs(i)]) and len(s) == 2 and s,
        what="node a to start two jobs",
    )
    a.proc.send_signal(signal.SIGTERM)
    pools.node("b")

    eventually(lambda: all(pools.finished(i) for i in ids), timeout_s=90, what="all jobs")
    assert a.proc.wait(timeout=60) == 0
    for job_id in started:  # the two in hand finished on a, in their first attempt
        assert [(r["node"], r["outcome"]) for r in pools.runs(job_id)] == [
            ("a", "started"),
            ("a", "ok"),
        ]
    others = [i for i in ids if i not in started]
    assert all(pools.runs(i)[-1]["node"] == "b" for i in others)
    assert all(len(pools.runs(i)) == 2 for i in ids)  # nothing ran twice, nothing lost


def test_kill_9_of_a_node_mid_job_redelivers_and_completes(pools: Pools) -> None:
    a = pools.node("a")
    [job_id] = pools.send("test.sleep", {"seconds": 3})
    eventually(lambda: pools.runs(job_id), what="node a to start the job")
    a.kill9()
    pools.node("b")

    eventually(lambda: pools.finished(job_id), timeout_s=60, what="the job to complete")
    runs = pools.runs(job_id)
    assert (runs[0]["node"], runs[0]["outcome"]) == ("a", "started")
    assert (runs[-1]["node"], runs[-1]["outcome"]) == ("b", "ok")
    assert runs[-1]["attempt"] >= 2


# -- max_runtime_s (test.overrun: 2 s) in each pool kind -------------------------------------


@pytest.mark.parametrize("pool", ["aio", "solo"])
def test_asyncio_and_solo_stop_a_job_at_max_runtime_as_prefork_s_soft_limit(
    pool_of: Callable[[str], Pools], pool: str
) -> None:
    pk = pool_of(pool)
    node = pk.node("a")
    [job_id] = pk.send("test.overrun", {"seconds": 60})

    # Each attempt is stopped at 2 s, a failed attempt; the third is dead-lettered.
    record = pk.dead_letters(1)[job_id]
    assert (record.reason, record.error_type, record.attempts) == (
        "attempts_exhausted",
        "SoftTimeLimitExceeded",
        3,
    )
    started = [r["attempt"] for r in pk.runs(job_id) if r["outcome"] == "started"]
    assert started == [1, 2, 3]
    assert "ok" not in pk.outcomes(job_id)
    if pool == "aio":  # the cancellation reached the coroutine
        assert pk.outcomes(job_id).count("cancelled") == 3
    node.check_alive()  # stopped the job, not the node


def test_a_threads_job_past_max_runtime_and_grace_recycles_its_node(
    pool_of: Callable[[str], Pools],
) -> None:
    pk = pool_of("threads")
    a = pk.node("a")
    # Sleeps 12 s, ignoring its deadline (2 s): overdue at 2 + 5 s of grace.
    [job_id] = pk.send("test.overrun", {"seconds": 12})

    assert a.wait(timeout_s=90) == EXIT_RECYCLED  # drained, then exited for a fresh start
    [overran] = pk.events(a, "job.overran")
    assert (overran["job_id"], overran["max_runtime_s"]) == (job_id, 2)
    assert pk.runs(job_id)[0]["attempt"] == 1


def test_past_the_shutdown_grace_the_job_in_hand_is_stopped_and_comes_back(
    pools: Pools,
) -> None:
    pools.env["CONVEYOR_WORKER_SHUTDOWN_GRACE_S"] = "2"
    a = pools.node("a")
    [job_id] = pools.send("test.sleep", {"seconds": 20})
    eventually(lambda: pools.runs(job_id), what="node a to start the job")
    a.proc.send_signal(signal.SIGTERM)
    a.wait(timeout_s=60)
    if pools.pool == "aio":  # the cancellation reached the coroutine (its cleanup ran)
        assert pools.outcomes(job_id) == ["started", "cancelled"]
    assert not pools.finished(job_id)
    del pools.env["CONVEYOR_WORKER_SHUTDOWN_GRACE_S"]
    # The message was released, not left to its visibility timeout: visible again once
    # the long poll a left waiting is over (so that poll could not take it for nobody).
    pools.node("b")
    eventually(lambda: pools.finished(job_id), timeout_s=90, what="the job on node b")
    runs = pools.runs(job_id)
    assert (runs[0]["node"], runs[-1]["node"], runs[-1]["outcome"]) == ("a", "b", "ok")
    assert runs[-1]["attempt"] == 2  # no receive was spent on nobody in between


def test_an_asyncio_node_recycles_after_max_jobs_per_child_and_loses_nothing(
    pool_of: Callable[[str], Pools], tmp_path: Path
) -> None:
    pk = pool_of("aio")
    path = tmp_path / "recycling.yaml"
    path.write_text(
        TOPOLOGY.read_text().replace(
            "    worker_pool: asyncio\n", "    worker_pool: asyncio\n    max_jobs_per_child: 4\n"
        )
    )
    pk.env["CONVEYOR_QUEUES_FILE"] = str(path)  # the same queues, recycling after 4 jobs
    ids = pk.send("test.note", {"label": "r"}, count=12)
    codes: list[int] = []
    while not all(pk.finished(i) for i in ids):
        assert len(codes) < 8, codes  # each node runs 4 or 5 jobs: 3 or 4 nodes do it all
        node = Worker(
            "aio",
            env={**pk.env, "CONVEYOR_TEST_NODE": f"n{len(codes)}"},
            log_dir=pk.log_dir,
            name=f"aio-n{len(codes)}",
        )
        pk.nodes.append(node)
        eventually(
            lambda node=node: not node.alive or all(pk.finished(i) for i in ids),
            timeout_s=90,
            what="the node to recycle or the jobs to finish",
        )
        if not node.alive:
            codes.append(node.proc.returncode)
    assert codes
    assert set(codes) == {EXIT_RECYCLED}
    assert all(pk.outcomes(i) == ["ok"] for i in ids)  # each ran once, none lost
    assert pk.events(pk.nodes[0], "worker.recycling")


def test_successes_are_deleted_in_batches(pools: Pools) -> None:
    # Only full batches and the shutdown flush send: the count does not depend on speed.
    pools.env["CONVEYOR_ACK_FLUSH_INTERVAL_S"] = "600"
    a = pools.node("a")
    ids = pools.send("test.note", {"label": "b"}, count=30)
    eventually(lambda: all(pools.finished(i) for i in ids), what="all 30 jobs")
    a.proc.send_signal(signal.SIGTERM)
    assert a.wait(timeout_s=60) == 0
    [stopped] = pools.events(a, "worker.stopped")
    requests = stopped["aws_requests"]
    assert requests.get("sqs.DeleteMessage", 0) == 0
    assert requests.get("sqs.DeleteMessageBatch", 0) <= 30 // 10 + 1, requests
    url = queue_url(pools.topology, pools.queue)
    assert visible_in_flight(url) == (0, 0)
