"""ScheduleFirer against moto in-process: once per tick across firers, misfire, pause, leases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from infra import aws
from infra.aws.names import timers_table_name
from infra.cron import jitter_offset_s, tick_id
from infra.errors import ConfigError
from infra.ledger import ledger_for
from infra.provision import apply
from infra.topology import Topology, parse_topology
from producers.schedules import (
    ScheduleError,
    ScheduleFirer,
    ScheduleStore,
    metrics,
    schedule_enqueuer,
    schedule_job_id,
)
from producers.schedules.firer import schedule_source
from tests.support.queues import queue_url
from tests.support.schedules import create_timers_table, received_jobs

TOPOLOGY = """
project: ct
environment: sched
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
job_types:
  test.record: {topic: jobs, payload: "tests.jobs:Note", handler: "tests.jobs:record", ledger: true}
schedules:
  minutely:
    every: 1m
    job_type: test.record
    data: {label: minutely}
  catchup:
    every: 1m
    job_type: test.record
    data: {label: catchup}
    misfire: catch_up
    catch_up_limit: 3
    enabled: false
  jittery:
    every: 1h
    job_type: test.record
    data: {label: jittery}
    jitter_s: 30m
    enabled: false
  idle:
    every: 1m
    job_type: test.record
    data: {label: idle}
    enabled: false
"""

#: A minute boundary: the every-1m schedules tick here.
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def only(topology_text: str, *enabled: str) -> Topology:
    """The topology with only the ``enabled`` schedules on."""
    t = parse_topology(topology_text)
    schedules = {n: s.model_copy(update={"enabled": n in enabled}) for n, s in t.schedules.items()}
    return t.model_copy(update={"schedules": schedules})


@pytest.fixture
def topology(mocked_aws: None) -> Topology:
    t = parse_topology(TOPOLOGY)
    apply(t)
    create_timers_table(t)
    return t


@pytest.fixture
def firers(mocked_aws: None) -> Iterator[list[ScheduleFirer]]:
    made: list[ScheduleFirer] = []
    yield made
    for firer in made:
        firer.close()


def firer_for(topology: Topology, made: list[ScheduleFirer], owner: str) -> ScheduleFirer:
    firer = ScheduleFirer(topology, owner=owner)
    made.append(firer)
    return firer


def jobs(topology: Topology) -> list[tuple[str, str]]:
    """(job id, label) of every job the queue received, sorted."""
    return sorted((e.id, e.data["label"]) for e in received_jobs(queue_url(topology, "work")))


def ids(topology: Topology, name: str, *ticks: datetime) -> list[tuple[str, str]]:
    label = topology.schedules[name].data["label"]
    return sorted((schedule_job_id(topology, name, t), label) for t in ticks)


def count(counter: object, *labels: str) -> float:
    return counter.labels(*labels)._value.get()  # type: ignore[attr-defined]


def test_two_firers_on_the_same_tick_publish_once(
    topology: Topology, firers: list[ScheduleFirer]
) -> None:
    a, b = firer_for(topology, firers, "a"), firer_for(topology, firers, "b")
    now = T0 + timedelta(seconds=1)
    assert a.fire_due(now) == 1
    assert b.fire_due(now) == 0  # the cursor says 09:00 is settled: not even a claim
    assert a.fire_due(now + timedelta(seconds=5)) == 0  # the same tick, again: nothing
    assert jobs(topology) == ids(topology, "minutely", T0)
    [envelope] = received_jobs(queue_url(topology, "work")) or [None]
    assert envelope is None  # received for good above; nothing else arrived
    # The next tick goes to whoever comes first.
    assert b.fire_due(T0 + timedelta(seconds=61)) == 1
    assert a.fire_due(T0 + timedelta(seconds=61)) == 0
    assert jobs(topology) == ids(topology, "minutely", T0 + timedelta(minutes=1))


def test_a_firer_that_loses_the_claim_race_publishes_nothing(
    topology: Topology, firers: list[ScheduleFirer]
) -> None:
    a, b = firer_for(topology, firers, "a"), firer_for(topology, firers, "b")
    now = T0 + timedelta(seconds=1)
    # b read the state before a moved the cursor: a won the claim and published meanwhile.
    job_id = schedule_job_id(topology, "minutely", T0)
    assert a.store.claim("minutely", T0, job_id=job_id, owner="a", now=now, lease_s=60).kind == (
        "won"
    )
    a.store.mark_fired("minutely", T0, owner="a", now=now)
    lost = count(metrics.CLAIMS_LOST, "minutely")
    assert b.fire_due(now) == 0
    assert count(metrics.CLAIMS_LOST, "minutely") == lost + 1
    assert b.store.state("minutely").cursor == T0  # a fired tick is settled: b moves on
    assert jobs(topology) == []


def test_a_fired_tick_goes_through_the_api_pipeline(
    topology: Topology, firers: list[ScheduleFirer]
) -> None:
    firer = firer_for(topology, firers, "a")
    assert firer.fire_due(T0 + timedelta(seconds=2)) == 1
    [envelope] = received_jobs(queue_url(topology, "work"))
    assert envelope.id == schedule_job_id(topology, "minutely", T0)
    assert envelope.type == "test.record"
    assert envelope.data == {"label": "minutely"}
    assert envelope.source == schedule_source("minutely")
    assert envelope.traceparent  # a fresh trace, as the API gives a job without one
    ledger = ledger_for(topology)
    assert ledger is not None
    record = ledger.get(envelope.id)
    assert record is not None
    assert record.state == "queued"
    state = firer.store.state("minutely")
    assert state.last_job_id == envelope.id
    assert state.last_kind == "tick"
    assert state.last_tick == "2026-12-07T09:00:00Z"
    assert state.cursor == T0


def test_misfire_skip_fires_only_ticks_still_on_time(
    topology: Topology, firers: list[ScheduleFirer]
) -> None:
    firer = firer_for(topology, firers, "a")
    assert firer.fire_due(T0 + timedelta(seconds=1)) == 1
    jobs(topology)
    skipped = count(metrics.TICKS_SKIPPED, "minutely", "missed")
    # Down for ten minutes: 09:01 … 09:09 are missed (more than 60 s late), 09:10 is on time.
    later = T0 + timedelta(minutes=10, seconds=5)
    assert firer_for(topology, firers, "b").fire_due(later) == 1
    assert jobs(topology) == ids(topology, "minutely", T0 + timedelta(minutes=10))
    assert count(metrics.TICKS_SKIPPED, "minutely", "missed") == skipped + 9
    assert firer.store.state("minutely").cursor == T0 + timedelta(minutes=10)


def test_misfire_catch_up_fires_the_last_missed_ticks_up_to_the_limit(
    mocked_aws: None, firers: list[ScheduleFirer]
) -> None:
    topology = only(TOPOLOGY, "catchup")
    apply(topology)
    create_timers_table(topology)
    firer = firer_for(topology, firers, "a")
    assert firer.fire_due(T0 + timedelta(seconds=1)) == 1
    jobs(topology)
    later = T0 + timedelta(minutes=10, seconds=5)
    # 09:07, 09:08, 09:09 caught up (limit 3), 09:10 on time; 09:01-09:06 skipped.
    skipped = count(metrics.TICKS_SKIPPED, "catchup", "missed")
    assert firer_for(topology, firers, "b").fire_due(later) == 4
    assert count(metrics.TICKS_SKIPPED, "catchup", "missed") == skipped + 6
    expected = [T0 + timedelta(minutes=m) for m in (7, 8, 9, 10)]
    assert jobs(topology) == ids(topology, "catchup", *expected)
    # Oldest first: the last fire recorded is the newest tick.
    assert firer.store.state("catchup").last_tick == "2026-12-07T09:10:00Z"


def test_a_first_run_catches_nothing_up(mocked_aws: None, firers: list[ScheduleFirer]) -> None:
    topology = only(TOPOLOGY, "catchup")
    apply(topology)
    create_timers_table(topology)
    assert firer_for(topology, firers, "a").fire_due(T0 + timedelta(seconds=30)) == 1
    assert jobs(topology) == ids(topology, "catchup", T0)


def test_a_first_run_fires_only_the_latest_tick_of_the_grace_window(
    mocked_aws: None, firers: list[ScheduleFirer]
) -> None:
    topology = parse_topology(
        TOPOLOGY.replace(
            "every: 1m\n    job_type: test.record\n    data: {label: minutely}",
            "every: 10s\n    job_type: test.record\n    data: {label: minutely}",
        )
    )
    topology = topology.model_copy(
        update={"schedules": {"minutely": topology.schedules["minutely"]}}
    )
    assert topology.schedules["minutely"].every == 10
    apply(topology)
    create_timers_table(topology)
    # Six ticks of 10 s lie within the 60 s grace; a schedule never seen fires the last.
    assert firer_for(topology, firers, "a").fire_due(T0 + timedelta(seconds=55)) == 1
    assert jobs(topology) == ids(topology, "minutely", T0 + timedelta(seconds=50))


def test_pause_stops_firing_and_resume_does_not_catch_up(
    mocked_aws: None, firers: list[ScheduleFirer]
) -> None:
    topology = only(TOPOLOGY, "catchup")
    apply(topology)
    create_timers_table(topology)
    firer = firer_for(topology, firers, "a")
    store = ScheduleStore(firer.store.table_name)
    assert firer.fire_due(T0 + timedelta(seconds=1)) == 1
    store.set_paused("catchup", True, T0 + timedelta(seconds=10))
    for minute in (1, 2, 3):
        assert firer.fire_due(T0 + timedelta(minutes=minute, seconds=1)) == 0
    assert store.state("catchup").paused
    store.set_paused("catchup", False, T0 + timedelta(minutes=3, seconds=30))
    # Resumed: the next tick fires; the paused ones are not caught up (catch_up as it is).
    assert firer.fire_due(T0 + timedelta(minutes=4, seconds=1)) == 1
    assert jobs(topology) == ids(topology, "catchup", T0, T0 + timedelta(minutes=4))


def test_disabled_schedules_never_fire(mocked_aws: None, firers: list[ScheduleFirer]) -> None:
    topology = only(TOPOLOGY)
    apply(topology)
    create_timers_table(topology)
    firer = firer_for(topology, firers, "a")
    assert firer.fire_due(T0 + timedelta(seconds=1)) == 0
    assert firer.next_due(T0) is None
    assert jobs(topology) == []


def test_a_dead_claimers_tick_is_taken_over_after_its_lease(
    topology: Topology, firers: list[ScheduleFirer]
) -> None:
    store = ScheduleStore(firer_for(topology, firers, "x").store.table_name)
    claimed_at = T0 + timedelta(seconds=1)
    job_id = schedule_job_id(topology, "minutely", T0)
    # A replica claimed 09:00 and was killed before publishing.
    assert (
        store.claim("minutely", T0, job_id=job_id, owner="dead", now=claimed_at, lease_s=20).kind
        == "won"
    )
    survivor = firer_for(topology, firers, "b")
    assert survivor.fire_due(claimed_at + timedelta(seconds=5)) == 0  # lease still live
    assert store.state("minutely").cursor is None  # not settled: the cursor waits
    assert survivor.fire_due(claimed_at + timedelta(seconds=21)) == 1
    assert jobs(topology) == ids(topology, "minutely", T0)
    assert store.state("minutely").cursor == T0


def test_a_failed_publish_releases_the_claim_and_is_tried_again(
    mocked_aws: None, firers: list[ScheduleFirer]
) -> None:
    topology = only(TOPOLOGY, "minutely")
    create_timers_table(topology)  # no topic yet: SNS refuses the publish
    firer = firer_for(topology, firers, "a")
    failures = count(metrics.PUBLISH_FAILURES, "minutely")
    assert firer.fire_due(T0 + timedelta(seconds=1)) == 0
    assert count(metrics.PUBLISH_FAILURES, "minutely") == failures + 1
    assert firer.store.claims("minutely") == []  # released
    apply(topology)
    assert firer.fire_due(T0 + timedelta(seconds=3)) == 1
    assert jobs(topology) == ids(topology, "minutely", T0)


def test_jitter_delays_a_tick_the_same_way_on_every_replica(
    mocked_aws: None, firers: list[ScheduleFirer]
) -> None:
    topology = only(TOPOLOGY, "jittery")
    apply(topology)
    create_timers_table(topology)
    a, b = firer_for(topology, firers, "a"), firer_for(topology, firers, "b")
    tick = T0  # an hour boundary
    due = tick + timedelta(seconds=jitter_offset_s(f"jittery/{tick_id(tick)}", 1800))
    assert tick < due < tick + timedelta(minutes=30)  # this tick's offset is not 0
    assert a.fire_due(tick) == 0
    assert b.fire_due(due - timedelta(seconds=1)) == 0
    assert a.next_due(tick) == due  # both replicas compute the same due time
    assert jobs(topology) == []
    assert b.fire_due(due) + a.fire_due(due) == 1
    assert jobs(topology) == ids(topology, "jittery", tick)


def test_trigger_fires_once_now_under_a_fresh_job_id(
    topology: Topology, firers: list[ScheduleFirer]
) -> None:
    firer = firer_for(topology, firers, "a")
    first = firer.trigger("idle", T0)
    second = firer.trigger("idle", T0 + timedelta(seconds=1))
    assert first != second
    assert sorted(j for j, _ in jobs(topology)) == sorted([first, second])
    state = firer.store.state("idle")
    assert state.last_job_id == second
    assert state.last_kind == "trigger"
    with pytest.raises(ScheduleError, match=r"unknown schedule 'nope' \(known: catchup,"):
        firer.trigger("nope")


def test_bad_schedule_data_stops_the_firer_at_start(mocked_aws: None) -> None:
    topology = parse_topology(TOPOLOGY.replace("data: {label: minutely}", "data: {}"))
    enqueuer = schedule_enqueuer(topology)
    try:
        with pytest.raises(ConfigError, match=r"schedules.minutely.data: not a valid test.record"):
            ScheduleFirer(topology, enqueuer)
    finally:
        enqueuer.close()


def test_a_missing_timer_table_is_counted_and_never_raises(
    mocked_aws: None, firers: list[ScheduleFirer]
) -> None:
    topology = only(TOPOLOGY, "minutely")
    apply(topology)  # topics, queues and the timer table: the table is then deleted
    aws.client("dynamodb").delete_table(TableName=timers_table_name(topology))
    firer = firer_for(topology, firers, "a")
    failures = count(metrics.STORE_FAILURES, "minutely")
    assert firer.fire_due(T0 + timedelta(seconds=1)) == 0
    assert count(metrics.STORE_FAILURES, "minutely") == failures + 1
    assert firer.next_due(T0) == T0 + timedelta(seconds=2)  # tried again a second later
    assert jobs(topology) == []


@pytest.mark.parametrize(
    ("start", "fired_at"),
    [
        # Fall back (02:30 happens twice): one job, at the first 02:30 (CEST).
        (datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        # Spring forward (no 02:30): one job, at 03:00 CEST.
        (datetime(2027, 3, 27, 22, tzinfo=UTC), datetime(2027, 3, 28, 1, 0, tzinfo=UTC)),
    ],
)
def test_a_berlin_0230_schedule_fires_once_on_dst_days(
    mocked_aws: None, firers: list[ScheduleFirer], start: datetime, fired_at: datetime
) -> None:
    text = TOPOLOGY.replace(
        "every: 1m\n    job_type: test.record\n    data: {label: minutely}",
        'cron: "30 2 * * *"\n    timezone: Europe/Berlin\n'
        "    job_type: test.record\n    data: {label: minutely}",
    )
    topology = only(text, "minutely")
    apply(topology)
    create_timers_table(topology)
    a, b = firer_for(topology, firers, "a"), firer_for(topology, firers, "b")
    fired = []
    for step in range(6 * 12):  # six hours, a turn every five minutes, two replicas
        now = start + timedelta(minutes=5 * step, seconds=7)
        for firer in (a, b):
            if firer.fire_due(now):
                fired.append(now)
    assert len(fired) == 1
    assert fired_at <= fired[0] < fired_at + timedelta(minutes=5)
    assert jobs(topology) == ids(topology, "minutely", fired_at)
