"""End to end (issue 15): three ``conveyor scheduler`` processes, an ``every: 1s`` schedule for
30 s: one job per tick, no gaps, counted by tick (the job id derives from the tick).

Needs the scheduler role (``producers.scheduler``, ``conveyor scheduler --health-port``)
with the schedule firer plugged in; skipped where that role is not installed.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from infra.aws.names import timers_table_name
from infra.cron import Every, parse_tick_id
from infra.net import free_port
from infra.provision import apply
from infra.topology import Topology, load_topology
from producers.schedules import ScheduleStore, schedule_job_id
from tests.support.polling import eventually
from tests.support.processes import CONVEYOR, Child
from tests.support.queues import queue_url
from tests.support.schedules import create_timers_table, received_jobs

if TYPE_CHECKING:
    from tests.support.emulator import AwsEnv

pytest.importorskip("producers.scheduler", reason="the scheduler role is not on this branch")

pytestmark = pytest.mark.e2e

REPLICAS = 3
#: Ticks the replicas must fire together (one per second: about 30 s).
TICKS = 30

TOPOLOGY = """
project: ct
environment: test   # overridden by CONVEYOR_ENVIRONMENT
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


class Scheduler(Child):
    """``conveyor scheduler --health-port PORT``, ready once its ``/healthz`` answers 200."""

    def __init__(self, name: str, *, env: dict[str, str], log_dir: Path) -> None:
        self.health_port = free_port()
        argv = [*CONVEYOR, "scheduler", "--health-port", str(self.health_port)]
        super().__init__(name, argv, env=env, log_dir=log_dir)

    def ready(self) -> bool:
        healthz = self.answers(f"http://127.0.0.1:{self.health_port}/healthz")
        return healthz is not None and healthz.status_code == 200


@pytest.fixture
def topology(aws_env: AwsEnv, tmp_path: Path) -> tuple[Topology, dict[str, str]]:
    path = tmp_path / "queues.yaml"
    path.write_text(TOPOLOGY)
    topology = load_topology(path)
    apply(topology)
    create_timers_table(topology)  # a no-op once `infra apply` provisions it
    return topology, {**aws_env.env, "CONVEYOR_QUEUES_FILE": str(path)}


def fired_ticks(store: ScheduleStore) -> list[datetime]:
    """The ticks of ``pulse`` whose claim is settled as fired, ascending."""
    return sorted(
        parse_tick_id(str(c["sk"]["S"]).removeprefix("tick#"))
        for c in store.claims("pulse")
        if c["state"]["S"] == "fired"
    )


def test_three_schedulers_fire_every_tick_once(
    topology: tuple[Topology, dict[str, str]], tmp_path: Path
) -> None:
    t, env = topology
    store = ScheduleStore(timers_table_name(t))
    schedulers = [Scheduler(f"scheduler-{i}", env=env, log_dir=tmp_path) for i in range(REPLICAS)]
    try:
        for scheduler in schedulers:
            scheduler.wait_ready()
        ready_at = datetime.now(UTC)

        def enough() -> list[datetime] | None:
            for scheduler in schedulers:
                scheduler.check_alive()
            ticks = [tick for tick in fired_ticks(store) if tick > ready_at]
            return ticks if len(ticks) >= TICKS else None

        eventually(enough, what=f"{TICKS} ticks fired by {REPLICAS} schedulers", timeout_s=120)
    finally:
        codes = [scheduler.stop() for scheduler in schedulers]
        for scheduler in schedulers:
            scheduler.close()
    assert codes == [0] * REPLICAS, [s.text()[-2000:] for s in schedulers]

    ticks = fired_ticks(store)
    assert ticks == [ticks[0], *Every(1).ticks_between(ticks[0], ticks[-1])], "a gap in the ticks"
    jobs = Counter(e.id for e in received_jobs(queue_url(t, "work")))
    assert all(n == 1 for n in jobs.values()), f"published twice: {jobs.most_common(3)}"
    assert set(jobs) == {schedule_job_id(t, "pulse", tick) for tick in ticks}
    assert {c["state"]["S"] for c in store.claims("pulse")} == {"fired"}  # none left claimed
