"""What every fault scenario shares: real processes, publishing, and counting every job.

A scenario starts `conveyor worker` (and `conveyor api`) processes of
tests/faults/faults.yaml against a real moto server (tests/support/processes.py
starts them and waits on their /healthz), publishes jobs, does
something bad to the system, and then accounts for every accepted job id: it
either succeeded (its handler wrote an ``ok`` line to the outbox, see
tests/jobs.py) or sits in a dead-letter queue. Anything else is lost. The
scenario's figures become one line (:meth:`Tally.line`), printed and collected
for the end of the run (tests/faults/conftest.py, also from pytest-xdist workers).

Sizes: ``CONVEYOR_FAULTS=full`` (``make faults``) selects the full sizes, anything
else the short ones that ``make test`` runs (tests/support/scenarios.py).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra import aws
from infra.aws.names import sns_arn
from infra.envelope import Envelope, encode, make_envelope
from infra.failure import Failure
from infra.provision import apply
from infra.topology import Topology, load_topology
from tests import REPO
from tests.support import outbox as handler_outbox
from tests.support.emulator import AwsEnv
from tests.support.processes import Api, Child, Worker
from tests.support.queues import depth, dlq_url, queue_url, receive_all
from tests.support.scenarios import FULL, report, size

__all__ = ["FULL", "TOPOLOGY", "Cluster", "Tally", "notes", "size", "sleeps"]

TOPOLOGY = REPO / "tests" / "faults" / "faults.yaml"

#: How often the settle loop looks again (it reads the outbox and the DLQs).
SETTLE_POLL_S = 0.5


@dataclass
class Tally:
    """One scenario's figures: every accepted job is succeeded, dead-lettered or lost."""

    scenario: str
    accepted: int
    succeeded: int
    dead_lettered: int
    lost: list[str]
    duplicates: int
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """``scenario=… accepted=… succeeded=… dead_lettered=… lost=… duplicates=… …``."""
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items())
        return (
            f"{self.scenario}: accepted={self.accepted} succeeded={self.succeeded}"
            f" dead_lettered={self.dead_lettered} lost={len(self.lost)}"
            f" duplicates={self.duplicates}" + (f" {extra}" if extra else "")
        )

    def report(self) -> None:
        """Print the line (visible with -s) and keep it for the terminal summary."""
        report(self.line())


class Cluster:
    """The processes of one scenario and what it needs to count their work."""

    def __init__(self, topology: Topology, env: dict[str, str], outbox: Path, log_dir: Path):
        self.topology = topology
        self.env = env
        self.outbox = outbox
        self.log_dir = log_dir
        self.procs: list[Child] = []
        self._serial = Counter[str]()
        #: Cumulative: a DLQ message is received once, for good, and remembered here.
        self.dead: dict[str, Failure | None] = {}
        #: Every DLQ message received: (body, failure record or None for a native redrive).
        self.dead_messages: list[tuple[str, Failure | None]] = []
        #: Ids known to have succeeded (an ok line seen).
        self._ok: set[str] = set()

    # --- processes --------------------------------------------------------------------

    def node(self, pool: str, *, wait: bool = True, **env: str) -> Worker:
        """Start a `conveyor worker --pool POOL` node; by default wait until it consumes."""
        self._serial[pool] += 1
        name = f"node-{pool}{self._serial[pool]}"
        node = Worker(
            pool,
            env={**self.env, "CONVEYOR_TEST_NODE": name, **env},
            log_dir=self.log_dir,
            name=name,
        )
        self.procs.append(node)
        if wait:
            node.wait_ready()
        return node

    def api(self, **env: str) -> tuple[Api, str]:
        """Start `conveyor api` on a free loopback port; wait for /healthz; (process, URL)."""
        api = Api(env={**self.env, **env}, log_dir=self.log_dir)
        self.procs.append(api)
        api.wait_ready()
        return api, api.url

    def nodes(self, pool: str, count: int, **env: str) -> list[Worker]:
        """Start ``count`` nodes of ``pool`` at once, then wait for all of them."""
        return self.start({pool: count}, **env)[pool]

    def start(self, counts: dict[str, int], **env: str) -> dict[str, list[Worker]]:
        """Start nodes of several pools at once (``{"a": 2, "b": 2}``), then wait for all."""
        started = {
            pool: [self.node(pool, wait=False, **env) for _ in range(count)]
            for pool, count in counts.items()
        }
        self.wait_ready([proc for procs in started.values() for proc in procs])
        return started

    @staticmethod
    def wait_ready(procs: Iterable[Worker]) -> None:
        """Wait until every node in ``procs`` consumes."""
        for proc in procs:
            proc.wait_ready()

    def close(self) -> None:
        for proc in self.procs:
            proc.close()

    # --- publishing -------------------------------------------------------------------

    def topic_arn(self, topic: str = "jobs") -> str:
        return sns_arn(aws.region_name(), aws.account_id(), self.topology.topic_name(topic))

    def publish(self, envelopes: Iterable[Envelope]) -> list[str]:
        """SNS PublishBatch, 10 a call; the ids SNS accepted (a failed entry raises)."""
        sns = aws.client("sns")
        arn = self.topic_arn()
        accepted: list[str] = []
        batch: list[Envelope] = []

        def flush() -> None:
            entries = [{"Id": str(i), "Message": encode(e)} for i, e in enumerate(batch)]
            answer = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)  # type: ignore[arg-type]
            if answer.get("Failed"):
                raise AssertionError(f"SNS refused entries: {answer['Failed']}")
            accepted.extend(batch[int(ok["Id"])].id for ok in answer["Successful"])
            batch.clear()

        for envelope in envelopes:
            batch.append(envelope)
            if len(batch) == 10:
                flush()
        if batch:
            flush()
        return accepted

    # --- counting ---------------------------------------------------------------------

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        return handler_outbox.runs(self.outbox, job_id)

    def ok_runs(self, job_id: str) -> int:
        return sum(1 for r in self.runs(job_id) if r.get("outcome") == "ok")

    def url(self, queue: str) -> str:
        return queue_url(self.topology, queue)

    def dlq_url(self, queue: str) -> str:
        return dlq_url(self.topology, queue)

    def depth(self, queue: str) -> int:
        """Visible + in flight + delayed messages of ``queue``."""
        return depth(self.url(queue)).total

    def drain_dead_letters(self) -> None:
        """Receive every visible DLQ message for good (hidden an hour) and remember it."""
        for queue in self.topology.queues:
            for message in receive_all(self.dlq_url(queue), hold_s=3600):
                body = message.get("Body", "")
                failure = Failure.from_message(message)
                self.dead_messages.append((body, failure))
                try:
                    job_id = json.loads(body).get("id")
                except (ValueError, AttributeError, RecursionError):  # not a job
                    job_id = None
                if isinstance(job_id, str):
                    self.dead[job_id] = failure

    def assert_dead_lettered_once(self, expected: list[tuple[str, str, str]], queue: str) -> None:
        """Each ``(what, body, reason)`` is in ``queue``'s DLQ exactly once, byte for byte,
        with its reason, after ONE receive (call :meth:`drain_dead_letters` first)."""
        records = dict(self.dead_messages)
        assert len(self.dead_messages) == len(expected)
        for what, body, reason in expected:
            failure = records[body]
            assert failure is not None, what
            assert failure.reason == reason, (what, failure.reason, failure.error_message)
            assert failure.attempts == 1, what
            assert failure.queue == queue
            assert failure.error_message, what

    def settle(
        self,
        scenario: str,
        accepted: Sequence[str],
        *,
        poison: Sequence[str] = (),
        timeout_s: float = 180.0,
        started: float | None = None,
        report: bool = True,
        **extra: Any,
    ) -> Tally:
        """Wait until every accepted job succeeded or was dead-lettered and the queues are
        empty, or until ``timeout_s``; count, report and return the figures.

        ``poison``: bodies sent straight to a queue that are not jobs (no usable id);
        each counts as accepted, and as dead-lettered once its body is in a DLQ.
        ``started`` (monotonic): report ``seconds`` from then until everything settled.
        ``report=False``: the caller adds figures to ``extra`` and reports itself.
        """
        pending = set(accepted) - self._ok - set(self.dead)
        poison_left = Counter(poison)
        deadline = time.monotonic() + timeout_s
        while True:
            for job_id in list(pending):
                if self.ok_runs(job_id):
                    self._ok.add(job_id)
                    pending.discard(job_id)
            self.drain_dead_letters()
            pending -= set(self.dead)
            poison_left = Counter(poison) - Counter(b for b, _ in self.dead_messages)
            drained = all(self.depth(q) == 0 for q in self.topology.queues)
            if not pending and not poison_left and drained:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(SETTLE_POLL_S)  # polling interval, bounded by the deadline
        if started is not None:
            extra["seconds"] = round(time.monotonic() - started, 1)
        ids = set(accepted)
        ok_counts = {i: self.ok_runs(i) for i in ids}
        succeeded = {i for i, n in ok_counts.items() if n}
        dead = ids & set(self.dead) - succeeded
        poison_dead = len(poison) - sum(poison_left.values())
        tally = Tally(
            scenario,
            accepted=len(ids) + len(poison),
            succeeded=len(succeeded),
            dead_lettered=len(dead) + poison_dead,
            lost=sorted(ids - succeeded - dead) + [f"poison:{b[:40]!r}" for b in poison_left],
            duplicates=sum(n - 1 for n in ok_counts.values() if n > 1),
            extra=extra,
        )
        if report:
            tally.report()
        return tally


def notes(job_type: str, count: int, label: str = "fault") -> Iterator[Envelope]:
    """``count`` envelopes of a job type with a Note payload."""
    for i in range(count):
        yield make_envelope(job_type, {"label": f"{label}-{i}"})


def sleeps(job_type: str, count: int, seconds: float) -> Iterator[Envelope]:
    """``count`` envelopes of a job type with a Sleep payload."""
    for _ in range(count):
        yield make_envelope(job_type, {"seconds": seconds})


@pytest.fixture
def cluster(aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """tests/faults/faults.yaml provisioned under a fresh name; its processes die at teardown."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # worker processes import tests.jobs
    topology = load_topology(TOPOLOGY)
    apply(topology)
    system = Cluster(topology, dict(os.environ), outbox, tmp_path)
    try:
        yield system
    finally:
        system.close()
