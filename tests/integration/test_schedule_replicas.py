"""Three schedule firers in three processes against the emulator: one job per tick, no gaps.

Each replica is its own process (its own boto3 clients and connections) running the
scheduler's turn — ``ScheduleFirer.fire_due(now)`` — every 100 ms on an ``every: 1s``
schedule for about ten seconds. The queue then holds exactly one job per tick, counted
by tick (the job id derives from the tick), from the first tick fired to the last.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from infra.aws.names import timers_table_name
from infra.cron import Every, parse_tick_id, tick_id
from infra.provision import apply
from infra.topology import load_topology
from producers.schedules import ScheduleFirer, ScheduleStore, schedule_job_id
from tests.support.queues import queue_url
from tests.support.schedules import create_timers_table, received_jobs

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

    from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration

REPLICAS = 3
RUN_S = 10.0
#: The pace of a replica's loop (the scheduler role's turn interval), not a wait for a result.
TURN_S = 0.1

TOPOLOGY = """
project: ct
environment: replicas
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
job_types:
  test.record: {topic: jobs, payload: "tests.jobs:Note", handler: "tests.jobs:record"}
schedules:
  pulse:
    every: 1s
    job_type: test.record
    data: {label: pulse}
"""


def run_replica(path: str, owner: str, start: Barrier, results: Queue[tuple[str, int]]) -> None:
    """One scheduler replica: once every replica is ready, turns for RUN_S, then reports."""
    topology = load_topology(path)
    firer = ScheduleFirer(topology, owner=owner)
    fired = 0
    try:
        start.wait(timeout=120)  # all three overlap for the whole run
        stop_at = time.monotonic() + RUN_S
        while time.monotonic() < stop_at:
            fired += firer.fire_due(datetime.now(UTC))
            time.sleep(TURN_S)  # the loop's pace
    finally:
        firer.close()
        results.put((owner, fired))


def test_three_replicas_fire_each_tick_once_without_gaps(aws_env: AwsEnv, tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(TOPOLOGY)
    topology = load_topology(path)
    apply(topology)
    create_timers_table(topology)

    context = multiprocessing.get_context("spawn")
    results: Queue[tuple[str, int]] = context.Queue()
    start = context.Barrier(REPLICAS)
    replicas = [
        context.Process(target=run_replica, args=(str(path), f"r{i}", start, results))
        for i in range(REPLICAS)
    ]
    for replica in replicas:
        replica.start()
    try:
        fired_by = dict(results.get(timeout=RUN_S + 180) for _ in replicas)
    finally:
        for replica in replicas:
            replica.join(timeout=30)
            if replica.is_alive():
                replica.kill()
    assert all(r.exitcode == 0 for r in replicas), [r.exitcode for r in replicas]

    jobs = received_jobs(queue_url(topology, "work"))
    by_id = Counter(e.id for e in jobs)
    assert all(n == 1 for n in by_id.values()), f"published twice: {by_id.most_common(3)}"
    assert sum(fired_by.values()) == len(jobs), fired_by

    # Map job ids back to ticks: every tick between the first and the last fired is there.
    store = ScheduleStore(timers_table_name(topology))
    claims = store.claims("pulse")
    fired_ticks = sorted(parse_tick_id(str(c["sk"]["S"]).removeprefix("tick#")) for c in claims)
    # Ten seconds of three replicas hold at least nine whole seconds' ticks.
    assert len(fired_ticks) >= RUN_S - 1, f"only {len(fired_ticks)} ticks in {RUN_S:g} s"
    expected = [fired_ticks[0], *Every(1).ticks_between(fired_ticks[0], fired_ticks[-1])]
    assert fired_ticks == expected, "a gap in the ticks"
    assert {c["state"]["S"] for c in claims} == {"fired"}
    assert set(by_id) == {schedule_job_id(topology, "pulse", t) for t in expected}
    print(
        f"{len(expected)} ticks {tick_id(fired_ticks[0])}..{tick_id(fired_ticks[-1])},"
        f" fired by replica: {fired_by}"
    )
