"""The emulator stops answering for ~10 s in the middle of a run, then comes back.

moto keeps everything in memory, so a real restart would lose every queue and message
(no AWS outage does that). The outage is therefore a freeze: SIGSTOP to the emulator's
process group, SIGCONT ~10 s later. Connections stay open and requests hang, as they do
when AWS or the network between stops answering.

While it is frozen, the API must never answer 202 for a job SNS did not accept (it
answers 503, or holds the request until SNS answers); producers retry; workers'
failed polls are retried and the nodes carry on. The line reports how long the API
and the workers took to recover, and how many jobs ran although their producer got a
503 (the publish reached SNS but the answer came too late: at-least-once, so the
producer's retry enqueued the same work twice under two job ids).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from infra.emulator import EmulatorProcess
from infra.provision import apply
from infra.topology import load_topology
from producers.client import Client, EnqueueError, Retry
from tests import REPO
from tests.faults.harness import FULL, TOPOLOGY, Cluster, size
from tests.faults.proxy import CuttableProxy
from tests.support.emulator import fresh_environment, pointed_at
from tests.support.polling import eventually

#: How long the emulator stays frozen (well below the workers' 120 s liveness timeout).
OUTAGE_S = 10.0
#: A request the API holds longer than this counts as a hang.
CLIENT_TIMEOUT_S = 60.0


@dataclass
class Answers:
    """Every HTTP status the API answered, and every request that got no answer."""

    statuses: Counter[int | str] = field(default_factory=Counter)
    #: (when, what) of every request that got no answer, for the failure message.
    errors: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class CountingTransport(httpx.HTTPTransport):
    """One producer thread's transport (its own connections), counting into ``answers``."""

    def __init__(self, answers: Answers) -> None:
        super().__init__()
        self.answers = answers

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = super().handle_request(request)
        except httpx.HTTPError as exc:
            with self.answers.lock:
                self.answers.statuses[type(exc).__name__] += 1
                self.answers.errors.append((time.time(), repr(exc)))
            raise
        with self.answers.lock:
            self.answers.statuses[response.status_code] += 1
        return response


@dataclass
class Producer:
    """Threads that enqueue jobs through producers.client.Client until stopped.

    Even threads send one job per request (``enqueue``), odd ones ten (``enqueue_many``,
    the batch route). The client retries 503 and 429 itself, honouring Retry-After,
    with the same idempotency key, so a publish that reached SNS although its answer
    was a 503 is sent again under the same job id (a duplicate delivery, never a
    second job).
    """

    api_url: str
    #: Makes this run's idempotency keys unique.
    run: str = field(default_factory=lambda: os.urandom(4).hex())
    answers: Answers = field(default_factory=Answers)
    accepted: list[tuple[float, str]] = field(default_factory=list)
    #: Jobs the client gave up on (no answer, or its retry budget spent).
    gave_up: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, count: int) -> None:
        for i in range(count):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, n: int) -> None:
        retry = Retry(max_attempts=100, max_wait_s=120.0, base_s=0.2, cap_s=2.0)
        with Client(
            self.api_url,
            timeout_s=CLIENT_TIMEOUT_S,
            retry=retry,
            transport=CountingTransport(self.answers),
        ) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    key = f"{self.run}-{n}-{i}"  # the same key on every retry of this job
                    if n % 2 == 0:
                        job = client.enqueue(
                            "fault.note", {"label": f"p{n}-{i}"}, idempotency_key=key
                        )
                        self.accepted.append((time.time(), job.id))
                        continue
                    jobs = [{"type": "fault.slow", "data": {"seconds": 0.01}}] * 10
                    for item in client.enqueue_many(jobs, idempotency_key=key):
                        if item.accepted and item.id is not None:
                            self.accepted.append((time.time(), item.id))
                        else:
                            self.gave_up += 1
                except EnqueueError:
                    self.gave_up += 1
                    self.stop.wait(0.5)  # no answer at all: the API itself is unreachable

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=CLIENT_TIMEOUT_S + 5)


@pytest.fixture
def own_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorProcess]:
    """An emulator of this test's own, so freezing it stops nobody else's tests."""
    proc = EmulatorProcess(log_path=tmp_path / "emulator.log")
    proc.start()
    try:
        with pointed_at(proc.endpoint_url, fresh_environment("o"), monkeypatch):
            yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)  # a stopped process would not see SIGTERM
        proc.stop()


class Outage:
    """How the emulator goes away: frozen (SIGSTOP/SIGCONT) or cut (a proxy refuses)."""

    def __init__(self, mode: str, emulator: EmulatorProcess) -> None:
        self.mode = mode
        self.emulator = emulator
        port = urlsplit(emulator.endpoint_url).port
        assert port is not None
        self.proxy = CuttableProxy(port) if mode == "cut" else None

    @property
    def endpoint_url(self) -> str:
        """What the API and the nodes talk to."""
        return self.proxy.url if self.proxy else self.emulator.endpoint_url

    @property
    def name(self) -> str:
        if self.proxy:
            return "emulator cut off 10 s (proxy refuses connections)"
        return "emulator frozen 10 s (SIGSTOP/SIGCONT)"

    def begin(self) -> None:
        if self.proxy:
            self.proxy.cut()
        else:
            os.killpg(self.emulator.pid, signal.SIGSTOP)

    def end(self) -> None:
        if self.proxy:
            self.proxy.restore()
        else:
            os.killpg(self.emulator.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.proxy:
            self.proxy.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode",
    [
        "freeze",
        # The cut variant runs at full size only, to keep make test short.
        pytest.param("cut", marks=pytest.mark.skipif(not FULL, reason="full size only")),
    ],
)
def test_emulator_gone_for_10_s_mid_run_loses_no_job(
    mode: str, own_emulator: EmulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("CONVEYOR_API_AUTH", "none")
    # SNS calls give up after 2 s: a frozen SNS becomes 503s during the outage.
    monkeypatch.setenv("CONVEYOR_API_AWS_READ_TIMEOUT_S", "2")
    topology = load_topology(TOPOLOGY)
    apply(topology)
    outage = Outage(mode, own_emulator)
    # The API and the nodes go through the outage; this process talks to the emulator.
    env = {**os.environ, "AWS_ENDPOINT_URL": outage.endpoint_url}
    cluster = Cluster(topology, env, outbox, tmp_path)
    producer: Producer | None = None
    try:
        nodes = [cluster.node("a", wait=False), cluster.node("b", wait=False)]
        api, api_url = cluster.api()  # starts while the nodes do
        cluster.wait_ready(nodes)
        producer = Producer(api_url)
        producer.start(size(2, 4))
        warm = size(10, 200)
        eventually(lambda: len(producer.accepted) >= warm, what=f"{warm} jobs", timeout_s=60)

        outage.begin()
        frozen_at = time.time()
        accepted_before = len(producer.accepted)
        time.sleep(OUTAGE_S)  # the outage itself, not a synchronisation
        outage.end()
        resumed_at = time.time()
        # A 202 can arrive during the freeze for a publish SNS took just before it (the
        # API's DynamoDB writes after the publish time out, and it still answers 202).
        accepted_during = sum(1 for at, _ in producer.accepted if frozen_at < at < resumed_at)

        eventually(
            lambda: sum(1 for at, _ in producer.accepted if at > resumed_at) >= warm,
            what=f"{warm} jobs accepted after the outage",
            timeout_s=120,
        )
        producer.join()
        ids = [job_id for _, job_id in producer.accepted]
        first_202_after = min(at for at, _ in producer.accepted if at > resumed_at)
        run_after = eventually(
            lambda: [
                r["at"]
                for path in outbox.iterdir()
                for r in cluster.runs(path.stem)
                if r["at"] > resumed_at and r["outcome"] == "ok"
            ],
            what="a job to run after the outage",
        )
        statuses = dict(producer.answers.statuses)
        tally = cluster.settle(
            outage.name,
            ids,
            outage_s=round(resumed_at - frozen_at, 1),
            accepted_during_outage=accepted_during,
            api_recovery_s=round(first_202_after - resumed_at, 1),
            worker_recovery_s=round(min(run_after) - resumed_at, 1),
            statuses="/".join(f"{k}:{v}" for k, v in sorted(statuses.items(), key=str)),
            report=False,
        )
        ran = {p.stem for p in outbox.iterdir()}
        tally.extra["gave_up"] = producer.gave_up
        # Jobs that ran under an id the producer never got a 202 for. Either a publish
        # that reached SNS although the API answered 503, retried under a new id (the
        # idempotency keys prevent that: a retry reuses the first id), or a job the client
        # gave up on (409 "in progress" is not retried) that had in fact been published.
        tally.extra["ran_unacknowledged"] = len(ran - set(ids))
        tally.report()
        assert tally.lost == []
        assert tally.extra["ran_unacknowledged"] <= producer.gave_up  # never a second job
        assert accepted_before >= warm
        # 202 (207: part of a batch), 503 or 429, and 409 for a key whose first request
        # is still unsettled: never a 500, never another 4xx for a valid job.
        errors = [(round(at - resumed_at, 2), what) for at, what in producer.answers.errors]
        assert set(statuses) <= {202, 207, 409, 429, 503}, (statuses, errors)
        assert all(n.alive for n in nodes), [n.text()[-2000:] for n in nodes if not n.alive]
        assert api.alive
    finally:
        if producer is not None:
            producer.join()
        cluster.close()
        outage.close()
