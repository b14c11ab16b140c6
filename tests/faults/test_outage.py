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

import httpx
import pytest

from conveyor.system import free_port, wait_for_http
from infra import aws
from infra.emulator import EmulatorProcess
from infra.provision import apply
from infra.topology import load_topology
from tests import REPO
from tests.conftest import aws_environ
from tests.faults.harness import TOPOLOGY, Cluster, Proc, size
from tests.polling import eventually

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
    """Threads that enqueue jobs through the API until stopped, retrying 503s."""

    api_url: str
    answers: Answers = field(default_factory=Answers)
    accepted: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, count: int) -> None:
        for i in range(count):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, n: int) -> None:
        with httpx.Client(
            base_url=self.api_url,
            timeout=CLIENT_TIMEOUT_S,
            transport=CountingTransport(self.answers),
        ) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                job_type = "fault.note" if i % 2 else "fault.slow"
                payload = {"label": f"p{n}-{i}"} if i % 2 else {"seconds": 0.01}
                while not self.stop.is_set():
                    try:
                        answer = http.post(f"/v1/jobs/{job_type}", json=payload)
                    except httpx.HTTPError:
                        time.sleep(0.5)  # no answer: back off, then retry
                        continue
                    if answer.status_code == 202:
                        self.accepted.append((time.time(), answer.json()["id"]))
                        break
                    # 503/429 say when to come back; anything else is counted and retried.
                    delay_s = float(answer.headers.get("Retry-After", "1"))
                    self.stop.wait(min(delay_s, 1.0))

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
        environment = f"o{os.urandom(5).hex()}"
        for key, value in aws_environ(proc.endpoint_url, environment).items():
            monkeypatch.setenv(key, value)
        aws.reset_clients()
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)  # a stopped process would not see SIGTERM
        proc.stop()
        aws.reset_clients()


def test_emulator_frozen_for_10_s_mid_run_loses_no_job(
    own_emulator: EmulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("CONVEYOR_API_AUTH", "none")
    topology = load_topology(TOPOLOGY)
    apply(topology)
    cluster = Cluster(topology, dict(os.environ), outbox, tmp_path)
    producer: Producer | None = None
    try:
        port = free_port()
        api = Proc("api", ["api", "--port", str(port)], cluster.env, tmp_path)
        cluster.procs.append(api)
        api_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{api_url}/healthz", proc=api.proc)
        nodes = cluster.nodes("a", 1) + cluster.nodes("b", 1)
        producer = Producer(api_url)
        producer.start(size(2, 4))
        warm = size(20, 200)
        eventually(lambda: len(producer.accepted) >= warm, what=f"{warm} jobs", timeout_s=60)

        os.killpg(own_emulator.pid, signal.SIGSTOP)
        frozen_at = time.time()
        accepted_before = len(producer.accepted)
        time.sleep(OUTAGE_S)  # the outage itself, not a synchronisation
        os.killpg(own_emulator.pid, signal.SIGCONT)
        resumed_at = time.time()
        # A 202 can arrive just after the freeze for a publish SNS answered just before it.
        during = [round(at - frozen_at, 2) for at, _ in producer.accepted if at > frozen_at]
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
            "emulator frozen 10 s (SIGSTOP/SIGCONT)",
            ids,
            outage_s=round(resumed_at - frozen_at, 1),
            accepted_during_outage=accepted_during,
            during=during[:accepted_during],
            api_recovery_s=round(first_202_after - resumed_at, 1),
            worker_recovery_s=round(min(run_after) - resumed_at, 1),
            statuses="/".join(f"{k}:{v}" for k, v in sorted(statuses.items(), key=str)),
            report=False,
        )
        ran = {p.stem for p in outbox.iterdir()}
        tally.extra["ran_despite_503"] = len(ran - set(ids))
        tally.report()
        assert tally.lost == []
        assert accepted_before >= warm
        # Only 202 and 503 (or 429): never a 500, never a 4xx for a valid job.
        errors = [(round(at - resumed_at, 2), what) for at, what in producer.answers.errors]
        assert set(statuses) <= {202, 503, 429}, (statuses, errors)
        assert all(n.alive for n in nodes), [n.text()[-2000:] for n in nodes if not n.alive]
        assert api.alive
    finally:
        if producer is not None:
            producer.join()
        cluster.close()
