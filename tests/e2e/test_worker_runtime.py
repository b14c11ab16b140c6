"""The worker runtime against a real moto server with real worker processes."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conveyor.system import local_system
from infra import aws
from infra.emulator import EmulatorProcess
from infra.envelope import encode, make_envelope
from infra.provision import apply
from infra.topology import load_topology
from tests import REPO
from tests.support import http
from tests.support import outbox as handler_outbox
from tests.support.emulator import AwsEnv, fresh_environment, pointed_at
from tests.support.polling import eventually
from tests.support.processes import Worker, metric
from tests.support.queues import visible_in_flight

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
    assert visible_in_flight(url) == (0, 0)
    requests = worker_stopped_event(tmp_path / "worker-main.log")["aws_requests"]
    deletes = requests.get("sqs.DeleteMessageBatch", 0) + requests.get("sqs.DeleteMessage", 0)
    assert requests.get("sqs.DeleteMessage", 0) == 0
    assert deletes <= jobs // 10 + 1, requests
    for i in ids:  # each ran exactly once
        assert len((outbox / f"{i}.jsonl").read_text().splitlines()) == 1


RUNTIME = REPO / "tests" / "fixtures" / "runtime.yaml"


@pytest.fixture
def runtime(aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(RUNTIME))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    topology = load_topology(RUNTIME)
    apply(topology)
    url = aws.client("sqs").get_queue_url(QueueName=topology.queue_name("slow"))["QueueUrl"]
    rt = Runtime(outbox, url, dict(os.environ), tmp_path)
    yield rt
    for node in rt.nodes:
        node.close()


@dataclass
class Runtime:
    outbox: Path
    url: str
    env: dict[str, str]
    log_dir: Path
    nodes: list[Worker] = field(default_factory=list)

    def node(self, name: str) -> Worker:
        """A `conveyor worker` of the runtime topology, once it consumes."""
        node = Worker(
            "main", env={**self.env, "CONVEYOR_TEST_NODE": name}, log_dir=self.log_dir, name=name
        )
        self.nodes.append(node)
        node.wait_ready()
        return node

    def send(self, job_type: str, seconds: float, count: int = 1) -> list[str]:
        ids = []
        for _ in range(count):
            envelope = make_envelope(job_type, {"seconds": seconds})
            aws.client("sqs").send_message(QueueUrl=self.url, MessageBody=encode(envelope))
            ids.append(envelope.id)
        return ids

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        return handler_outbox.runs(self.outbox, job_id)

    def finished(self, job_id: str) -> bool:
        return handler_outbox.succeeded(self.outbox, job_id)


def test_a_job_three_times_longer_than_the_visibility_timeout_runs_once(runtime: Runtime) -> None:
    runtime.node("a")
    runtime.node("b")  # a second consumer that would take the message if it reappeared
    [job_id] = runtime.send("test.sleep", seconds=12)  # the queue's visibility timeout is 4 s

    eventually(lambda: runtime.finished(job_id), timeout_s=90, what="the long job to finish")
    runs = runtime.runs(job_id)
    assert [r["outcome"] for r in runs] == ["started", "ok"]  # one attempt, never a second
    assert runs[0]["attempt"] == 1


def test_a_job_past_its_max_runtime_is_stopped_and_counts_as_an_attempt(runtime: Runtime) -> None:
    runtime.node("a")
    [job_id] = runtime.send("test.overrun", seconds=30)  # max_runtime_s is 2

    # Each attempt is stopped at 2 s; after 3 attempts the job is dead-lettered.
    eventually(
        lambda: (
            [r["attempt"] for r in runtime.runs(job_id) if r["outcome"] == "started"] == [1, 2, 3]
        ),
        timeout_s=90,
        what="three attempts",
    )
    assert not runtime.finished(job_id)


def test_kill_9_of_a_node_mid_job_redelivers_and_completes(runtime: Runtime) -> None:
    a = runtime.node("a")
    [job_id] = runtime.send("test.sleep", seconds=3)
    eventually(lambda: runtime.runs(job_id), what="node a to start the job")
    a.kill9()  # SIGKILL to the whole process group: the node and its pool processes
    runtime.node("b")

    eventually(lambda: runtime.finished(job_id), timeout_s=60, what="the job to complete")
    runs = runtime.runs(job_id)
    assert runs[0]["node"] == "a"
    assert runs[0]["outcome"] == "started"
    assert runs[-1]["node"] == "b"
    assert runs[-1]["outcome"] == "ok"
    # Usually attempt 2; 3 when the killed node's long poll, still open on the server,
    # received the message once more before it came back (SQS does the same).
    assert runs[-1]["attempt"] >= 2


def test_sigterm_finishes_jobs_in_hand_and_releases_the_rest(runtime: Runtime) -> None:
    a = runtime.node("a")  # concurrency 2
    ids = runtime.send("test.sleep", seconds=3, count=6)
    started = eventually(
        lambda: (s := [i for i in ids if runtime.runs(i)]) and len(s) == 2 and s,
        what="node a to start two jobs",
    )
    a.proc.send_signal(signal.SIGTERM)
    b = runtime.node("b")

    eventually(lambda: all(runtime.finished(i) for i in ids), timeout_s=90, what="all jobs")
    assert a.proc.wait(timeout=60) == 0
    for job_id in started:  # the two in hand finished on a, in their first attempt
        assert [(r["node"], r["outcome"]) for r in runtime.runs(job_id)] == [
            ("a", "started"),
            ("a", "ok"),
        ]
    others = [i for i in ids if i not in started]
    assert all(runtime.runs(i)[-1]["node"] == "b" for i in others)
    assert all(len(runtime.runs(i)) == 2 for i in ids)  # nothing ran twice, nothing lost
    b.close()


def test_a_second_sigterm_stops_at_once_and_the_job_comes_back(runtime: Runtime) -> None:
    a = runtime.node("a")
    [job_id] = runtime.send("test.sleep", seconds=8)
    eventually(lambda: runtime.runs(job_id), what="node a to start the job")
    a.proc.send_signal(signal.SIGTERM)
    eventually(lambda: '"worker.stopping"' in a.log.read_text(), what="the first signal")
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(timeout=60) != 0  # stopped, not drained
    assert not runtime.finished(job_id)  # a never finished it

    runtime.node("b")  # the message reappears after its visibility timeout
    eventually(lambda: runtime.finished(job_id), timeout_s=60, what="the job on node b")
    assert runtime.runs(job_id)[-1]["node"] == "b"


@pytest.mark.slow
def test_health_metrics_and_the_idle_cost_of_a_node(runtime: Runtime) -> None:
    base = runtime.node("a").health_url
    assert http.get(f"{base}/healthz").json()["status"] == "ok"

    [job_id] = runtime.send("test.sleep", seconds=0.1)
    eventually(lambda: runtime.finished(job_id), what="the job")
    labels = {"job_type": "test.sleep", "queue": "slow"}
    page = eventually(
        lambda: (
            (t := http.get(f"{base}/metrics").text)
            and metric(t, "conveyor_jobs_succeeded_total", **labels) == 1
            # The delete is batched (ack flush interval): in flight until it is sent.
            and metric(t, "conveyor_jobs_in_flight") == 0
            and t
        ),
        what="the success to be counted and its message deleted",
    )
    assert metric(page, "conveyor_jobs_started_total", **labels) == 1
    assert metric(page, "conveyor_job_duration_seconds_count", **labels) == 1
    assert metric(page, "conveyor_job_queue_lag_seconds_count", queue="slow") == 1

    # Idle: long polls of 20 s, no sleeping in between, so about 3 receives a minute.
    before = metric(page, "conveyor_sqs_receive_message_requests")
    started = time.monotonic()
    eventually(lambda: time.monotonic() - started >= 45, timeout_s=60, what="45 s of idling")
    idle_s = time.monotonic() - started
    after = metric(http.get(f"{base}/metrics").text, "conveyor_sqs_receive_message_requests")
    receives = after - before
    print(
        f"idle node: {receives:g} ReceiveMessage in {idle_s:.0f} s"
        f" = {receives * 60 / idle_s:.1f}/min"
    )
    assert receives <= idle_s / 20 + 1


@pytest.mark.slow
def test_a_node_cut_off_from_sqs_reports_unhealthy_and_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        EmulatorProcess(log_path=tmp_path / "emulator.log") as emulator,
        pointed_at(
            emulator.endpoint_url,
            fresh_environment("cut"),
            monkeypatch,
            CONVEYOR_QUEUES_FILE=str(RUNTIME),
            CONVEYOR_TEST_OUTBOX=str(tmp_path),
            PYTHONPATH=str(REPO),
            CONVEYOR_WORKER_LIVENESS_TIMEOUT_S="25",  # above the 20 s long poll
        ) as env,
    ):
        apply(load_topology(RUNTIME))
        node = Worker("main", env=env.env, log_dir=tmp_path, name="a")
        try:
            node.wait_ready()
            emulator.kill()  # the connection is cut: polls fail from now on
            code = node.wait(timeout_s=120)
        finally:
            node.close()
    assert code == 3  # EXIT_UNHEALTHY: the supervisor restarts it
    assert '"worker.unhealthy"' in node.text()
