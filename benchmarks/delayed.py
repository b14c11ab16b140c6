"""Delayed jobs: lateness and AWS requests per job, for a 30 s and a 1 h delay, side by side.

Each scenario stores ``jobs`` delayed jobs one request at a time (as ``POST
/v1/jobs/{type}`` with ``delay_s`` does: :meth:`infra.timers.TimerStore.put_many`
with one job), ``rate`` per second, on a fresh environment of its own emulator, and
runs one scheduler (:class:`producers.scheduler.loop.Scheduler`, in this process, so
its requests are counted here) until every job is published. Lateness is the
scheduler's: when SNS accepted the job minus its due time.

The 1 h delay is simulated: its jobs are stored due 1 h after their enqueue, and
the scheduler's clock runs 1 h ahead, less the 30 s the other scenario waits, so
both take the same wall time. What a job costs does not depend on its delay — that
is the point being measured: a 1 h job costs what a 30 s job costs.

Requests are split into what each job causes (the put, its claim, its share of
PublishBatch and of the deleting BatchWriteItem) and the scheduler's polling (a
fixed cost per second, whatever the number of jobs: the Query per index partition
and the watermark's GetItem), reported per second.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from infra import aws
from infra.aws.names import timers_table_name
from infra.emulator import EmulatorProcess
from infra.envelope import encode, make_envelope
from infra.provision import apply
from infra.settings import SchedulingSettings, set_environment
from infra.timers import Timer, TimerStore
from infra.topology import Topology, load_topology
from producers.publisher import Published, PublishError
from producers.scheduler.loop import Scheduler
from producers.scheduler.publish import DuePublisher

REPO = Path(__file__).resolve().parent.parent
TOPOLOGY = REPO / "benchmarks" / "queues.yaml"
#: Requests that poll (whatever the number of jobs) rather than serve one job.
POLLING = frozenset({"dynamodb.Query", "dynamodb.GetItem"})
SHORT_DELAY_S = 30.0
LONG_DELAY_S = 3600.0


class _TimedPublisher(DuePublisher):
    """Records each published job's lateness by the scheduler's clock."""

    def __init__(self, topology: Topology, clock: Any) -> None:
        base = DuePublisher.for_topology(topology)
        super().__init__(topology, base.publisher, recorder=base.recorder, offloader=base.offloader)
        self.clock = clock
        self.lateness_s: list[float] = []
        self._lock = threading.Lock()

    def publish_timers(self, timers: Sequence[Timer]) -> list[Published | PublishError]:
        results = super().publish_timers(timers)
        now = self.clock()
        with self._lock:
            for timer, result in zip(timers, results, strict=True):
                if isinstance(result, Published):
                    self.lateness_s.append((now - timer.due_at).total_seconds())
        return results


def _counts() -> Counter[str]:
    return Counter(aws.request_counts())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def scenario(delay_s: float, jobs: int, rate: float, poll_interval_s: float) -> dict[str, Any]:
    """One delay on a fresh environment: store, schedule, publish; the figures."""
    topology = load_topology(TOPOLOGY, environment=f"d{uuid.uuid4().hex[:8]}")
    apply(topology)
    store = TimerStore(timers_table_name(topology))
    # The 1 h case: the scheduler's clock is ahead, so it reaches the jobs after ~30 s.
    skew = timedelta(seconds=delay_s - SHORT_DELAY_S)

    def clock() -> datetime:
        return datetime.now(UTC) + skew

    publisher = _TimedPublisher(topology, clock)
    settings = SchedulingSettings(poll_interval_s=poll_interval_s)
    scheduler = Scheduler(store, publisher, settings, clock=clock)
    stop = threading.Event()
    before = _counts()
    loop = threading.Thread(target=scheduler.run, args=(stop,), name="scheduler", daemon=True)
    loop.start()
    started = time.monotonic()
    for i in range(jobs):
        envelope = make_envelope("bench.work", {"enqueued_at": time.time(), "cpu_ms": 0.0})
        due = datetime.now(UTC) + timedelta(seconds=delay_s)
        [error] = store.put_many([Timer(envelope.id, "bench.work", due, encode(envelope))])
        if error is not None:
            raise RuntimeError(f"storing a delayed job failed: {error}")
        time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))  # the enqueue rate
    deadline = time.monotonic() + SHORT_DELAY_S + 120.0
    while len(publisher.lateness_s) < jobs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(publisher.lateness_s)} of {jobs} delayed jobs published")
        time.sleep(0.1)  # polling interval, bounded by the deadline
    wall_s = time.monotonic() - started
    stop.set()
    loop.join(timeout=30)
    scheduler.close()
    publisher.close()
    # The scheduler runs beside the puts: requests are told apart by operation.
    total = _counts() - before
    polling = {k: v for k, v in total.items() if k in POLLING}
    per_job = {k: v for k, v in total.items() if k not in POLLING}
    late = publisher.lateness_s
    return {
        "delay_s": delay_s,
        "simulated": delay_s != SHORT_DELAY_S,
        "jobs": jobs,
        "enqueue_rate_per_s": rate,
        "lateness_s": {
            "p50": round(statistics.median(late), 3),
            "p99": round(_percentile(late, 0.99), 3),
            "max": round(max(late), 3),
        },
        "requests_per_job": round(sum(per_job.values()) / jobs, 3),
        "requests_per_job_by_operation": {
            k: round(v / jobs, 3) for k, v in sorted(per_job.items())
        },
        "polling_requests_per_s": round(sum(polling.values()) / wall_s, 2),
        "requests_per_job_with_polling": round(sum(total.values()) / jobs, 3),
        "wall_s": round(wall_s, 1),
    }


def run(jobs: int = 100, rate: float = 10.0, poll_interval_s: float = 0.5) -> dict[str, Any]:
    """Both scenarios on one emulator of their own."""
    with EmulatorProcess(0) as emulator:
        set_environment(
            {
                "AWS_ENDPOINT_URL": emulator.endpoint_url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": aws.DEFAULT_REGION,
            }
        )
        aws.reset_clients()
        results = {
            f"{label}": scenario(delay_s, jobs, rate, poll_interval_s)
            for label, delay_s in (("30s", SHORT_DELAY_S), ("1h", LONG_DELAY_S))
        }
    return {
        "scenarios": results,
        "settings": {"jobs": jobs, "enqueue_rate_per_s": rate, "poll_interval_s": poll_interval_s},
        "note": "the 1h delay is simulated (due 1 h ahead, the scheduler's clock 1 h - 30 s"
        " ahead); requests_per_job counts what each job causes (put, claim, publish,"
        " delete); polling is a fixed cost per second per scheduler, shown apart",
    }


def table(doc: dict[str, Any]) -> str:
    """The two scenarios side by side."""
    scenarios = doc["scenarios"]
    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("lateness p50 (s)", lambda s: s["lateness_s"]["p50"]),
        ("lateness p99 (s)", lambda s: s["lateness_s"]["p99"]),
        ("AWS requests / job", lambda s: s["requests_per_job"]),
        ("  + polling, / job", lambda s: s["requests_per_job_with_polling"]),
        ("polling requests / s", lambda s: s["polling_requests_per_s"]),
    ]
    lines = [f"{'delayed jobs':<24}" + "".join(f"{name:>10}" for name in scenarios)]
    for label, get in rows:
        lines.append(f"{label:<24}" + "".join(f"{get(s):>10}" for s in scenarios.values()))
    return "\n".join(lines)
