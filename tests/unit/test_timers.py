"""The timer store (moto in process): buckets, claims and leases, cancel, and the scheduler's turn.

The table is created by ``infra apply`` (its sort key and due-time index included).
Times are given explicitly (a fake clock): leases and due times are compared with
the ``now`` each call is given, so no test sleeps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from infra import aws
from infra.aws.names import timers_table_name
from infra.envelope import encode, make_envelope
from infra.ledger import ledger_for
from infra.provision import apply
from infra.settings import SchedulingSettings
from infra.timers import (
    BUCKET_S,
    SHARDS,
    WATERMARK_GRACE_S,
    Timer,
    TimerStore,
    bucket_of,
    partition,
    shard_of,
)
from infra.topology import Topology, parse_topology
from producers.scheduler.loop import Scheduler
from producers.scheduler.publish import DuePublisher

YAML = """
version: 1
project: tm
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
job_types:
  mail.send: {topic: jobs, payload: "m:P", handler: "m:h", ledger: true}
"""

#: A bucket boundary, so tests can put timers on either side of it.
EDGE = datetime.fromtimestamp(1_800_000_000 // BUCKET_S * BUCKET_S, UTC)


@pytest.fixture
def topology(mocked_aws: None) -> Topology:
    topology = parse_topology(YAML, environment="unit")
    apply(topology)
    return topology


@pytest.fixture
def store(topology: Topology) -> TimerStore:
    return TimerStore(timers_table_name(topology))


def _timer(due_at: datetime, job_id: str | None = None) -> Timer:
    envelope = make_envelope("mail.send", {"to": "a@example.com"}, job_id=job_id)
    return Timer(envelope.id, "mail.send", due_at, encode(envelope), key_name="alpha")


def _put(store: TimerStore, *timers: Timer) -> None:
    assert store.put_many(list(timers)) == [None] * len(timers)


def _due(store: TimerStore, now: datetime) -> set[str]:
    """Every job id due at ``now`` in the buckets up to now's (from one bucket before EDGE)."""
    found: set[str] = set()
    for bucket in range(bucket_of(EDGE) - BUCKET_S, bucket_of(now) + 1, BUCKET_S):
        for shard in range(SHARDS):
            found |= {r.job_id for r in store.due_in(partition(bucket, shard), now, limit=1000)}
    return found


# -- store and look up --------------------------------------------------------------------


def test_a_stored_timer_reads_back_unchanged(store: TimerStore) -> None:
    timer = _timer(EDGE + timedelta(seconds=30))
    _put(store, timer)
    assert store.get(timer.job_id) == timer
    assert store.get("no-such-job") is None
    item = aws.client("dynamodb").get_item(
        TableName=store.table_name, Key={"pk": {"S": f"timer#{timer.job_id}"}, "sk": {"S": "timer"}}
    )["Item"]
    # Time to live: the retention after its due time (a safety net, not the normal path).
    assert int(item["expires_at"]["N"]) == int(timer.due_at.timestamp() + store.retention_s)
    assert item["due_bucket"]["S"] == partition(bucket_of(timer.due_at), shard_of(timer.job_id))


def test_only_due_timers_are_listed_across_a_bucket_boundary(store: TimerStore) -> None:
    ms = timedelta(milliseconds=1)
    before, at, after = _timer(EDGE - ms), _timer(EDGE), _timer(EDGE + ms)
    later = _timer(EDGE + timedelta(seconds=BUCKET_S))
    _put(store, before, at, after, later)
    # A timer due exactly at the boundary belongs to the new bucket.
    assert bucket_of(before.due_at) == bucket_of(EDGE) - BUCKET_S
    assert bucket_of(at.due_at) == bucket_of(after.due_at) == bucket_of(EDGE)

    assert _due(store, EDGE - 2 * ms) == set()
    assert _due(store, EDGE - ms) == {before.job_id}
    assert _due(store, EDGE) == {before.job_id, at.job_id}
    assert _due(store, EDGE + ms) == {before.job_id, at.job_id, after.job_id}
    assert later.job_id in _due(store, later.due_at)


def test_timers_spread_over_every_shard(store: TimerStore) -> None:
    timers = [_timer(EDGE) for _ in range(60)]
    _put(store, *timers)
    per_shard = [
        len(store.due_in(partition(bucket_of(EDGE), s), EDGE, limit=1000)) for s in range(SHARDS)
    ]
    assert sum(per_shard) == 60
    assert all(count > 0 for count in per_shard)


def test_a_put_lowers_the_watermark_to_its_bucket(store: TimerStore) -> None:
    assert store.watermark(EDGE) == bucket_of(EDGE)  # nothing recorded: now's bucket
    _put(store, _timer(EDGE - timedelta(seconds=3 * BUCKET_S)))
    assert store.watermark(EDGE) == bucket_of(EDGE) - 3 * BUCKET_S
    # Only from exactly the value read: a put that lowered it meanwhile wins.
    assert not store.advance_watermark(bucket_of(EDGE) - 2 * BUCKET_S, bucket_of(EDGE))
    assert store.advance_watermark(bucket_of(EDGE) - 3 * BUCKET_S, bucket_of(EDGE))
    assert store.watermark(EDGE) == bucket_of(EDGE)


# -- claims and leases ----------------------------------------------------------------------


def test_only_one_of_many_claims_wins(store: TimerStore) -> None:
    # One after the other, not from racing threads: in-process moto does not make a
    # conditional update atomic across threads (DynamoDB does), so a thread race here
    # would test moto. The condition is what makes the first claim the only one.
    timer = _timer(EDGE)
    _put(store, timer)
    won = [
        owner
        for owner in (f"r{i}" for i in range(8))
        if store.claim(timer.job_id, owner, EDGE, lease_s=30) is not None
    ]
    assert won == ["r0"]


def test_a_claim_returns_the_timer_with_its_lease(store: TimerStore) -> None:
    timer = _timer(EDGE)
    _put(store, timer)
    claimed = store.claim(timer.job_id, "a", EDGE, lease_s=30)
    assert claimed is not None
    assert claimed.envelope_json == timer.envelope_json
    assert claimed.lease_until == EDGE + timedelta(seconds=30)


def test_a_lease_keeps_others_out_until_it_expires(store: TimerStore) -> None:
    timer = _timer(EDGE)
    _put(store, timer)
    assert store.claim(timer.job_id, "dead", EDGE, lease_s=30) is not None
    # The holder died between claim and publish: nobody else takes it before the lease ends.
    assert store.claim(timer.job_id, "b", EDGE + timedelta(seconds=29), lease_s=30) is None
    assert store.claim(timer.job_id, "b", EDGE + timedelta(seconds=31), lease_s=30) is not None


def test_a_released_claim_is_free_at_once_and_a_completed_one_is_gone(store: TimerStore) -> None:
    timer = _timer(EDGE)
    _put(store, timer)
    assert store.claim(timer.job_id, "a", EDGE, lease_s=30) is not None
    store.release(timer.job_id, "someone-else")  # not the holder: nothing happens
    assert store.claim(timer.job_id, "b", EDGE, lease_s=30) is None
    store.release(timer.job_id, "a")
    assert store.claim(timer.job_id, "b", EDGE, lease_s=30) is not None
    assert store.complete([timer.job_id]) is None
    assert store.get(timer.job_id) is None
    assert store.claim(timer.job_id, "c", EDGE + timedelta(hours=1), lease_s=30) is None
    assert _due(store, EDGE) == set()


# -- cancel ---------------------------------------------------------------------------------


def test_cancel_a_waiting_job(store: TimerStore) -> None:
    timer = _timer(EDGE + timedelta(hours=1))
    _put(store, timer)
    assert store.cancel(timer.job_id, now=EDGE) == "cancelled"
    assert store.get(timer.job_id) is None
    assert store.claim(timer.job_id, "a", EDGE + timedelta(hours=2), lease_s=30) is None
    assert store.cancel(timer.job_id, now=EDGE) == "not_found"


def test_cancel_an_unknown_job(store: TimerStore) -> None:
    assert store.cancel("never-stored") == "not_found"


def test_cancel_a_claimed_job_is_too_late_while_its_lease_holds(store: TimerStore) -> None:
    timer = _timer(EDGE)
    _put(store, timer)
    assert store.claim(timer.job_id, "a", EDGE, lease_s=30) is not None
    assert store.cancel(timer.job_id, now=EDGE + timedelta(seconds=1)) == "publishing"
    assert store.get(timer.job_id) is not None
    # Its claimer died (the lease ran out unpublished): it can still be cancelled.
    assert store.cancel(timer.job_id, now=EDGE + timedelta(seconds=31)) == "cancelled"
    assert store.get(timer.job_id) is None


# -- the scheduler's turn ------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def received(topology: Topology) -> Callable[[], list[dict[str, object]]]:
    """Bodies published to the topic, via an SQS queue of the test's own."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="tm-unit-seen")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = f"arn:aws:sns:us-east-1:123456789012:{topology.topic_name('jobs')}"
    aws.client("sns").subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )

    def drain() -> list[dict[str, object]]:
        """Bodies published since the last drain."""
        bodies: list[dict[str, object]] = []
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return bodies
            for message in got:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    return drain


def _scheduler(
    topology: Topology, store: TimerStore, clock: Clock, owner: str, **settings: float
) -> Scheduler:
    return Scheduler(
        store,
        DuePublisher.for_topology(topology),
        SchedulingSettings(**settings),
        owner=owner,
        clock=clock,
    )


def test_a_turn_publishes_due_jobs_unchanged_and_deletes_them(
    topology: Topology, store: TimerStore, received: Callable[[], list[dict[str, object]]]
) -> None:
    clock = Clock(EDGE)
    due, early = _timer(EDGE - timedelta(seconds=1)), _timer(EDGE + timedelta(seconds=1))
    _put(store, due, early)
    scheduler = _scheduler(topology, store, clock, "a")
    result = scheduler.turn()
    assert (result.due, result.published, result.lost) == (1, 1, 0)
    bodies = received()
    assert bodies == [json.loads(due.envelope_json)]  # the stored envelope, as built
    assert store.get(due.job_id) is None
    assert store.get(early.job_id) is not None

    clock.now = EDGE + timedelta(seconds=1)
    assert scheduler.turn().published == 1
    assert [b["id"] for b in received()] == [early.job_id]
    assert scheduler.turn().due == 0


def test_a_job_claimed_by_a_dead_replica_is_published_after_its_lease(
    topology: Topology, store: TimerStore, received: Callable[[], list[dict[str, object]]]
) -> None:
    clock = Clock(EDGE)
    timer = _timer(EDGE)
    _put(store, timer)
    assert store.claim(timer.job_id, "killed", EDGE, lease_s=30) is not None
    scheduler = _scheduler(topology, store, clock, "b", lease_s=30)
    result = scheduler.turn()
    assert (result.due, result.lost, result.published) == (1, 1, 0)
    clock.now = EDGE + timedelta(seconds=31)
    # The lost claim is not retried before the lease (monotonic): a fresh replica takes it.
    result = _scheduler(topology, store, clock, "c", lease_s=30).turn()
    assert result.published == 1
    assert [b["id"] for b in received()] == [timer.job_id]


def test_tick_sources_run_every_turn_and_their_errors_are_not_fatal(
    topology: Topology, store: TimerStore
) -> None:
    calls: list[datetime] = []

    def broken(now: datetime) -> int:
        raise RuntimeError("cron store down")

    def firer(now: datetime) -> int:
        calls.append(now)
        return 2

    scheduler = Scheduler(
        store,
        DuePublisher.for_topology(topology),
        SchedulingSettings(),
        tick_sources=[broken, firer],
        clock=Clock(EDGE),
    )
    assert scheduler.turn().fired == 2
    assert scheduler.turn().fired == 2
    assert calls == [EDGE, EDGE]


def test_the_watermark_moves_past_old_empty_buckets(topology: Topology, store: TimerStore) -> None:
    old = EDGE - timedelta(seconds=10 * BUCKET_S)
    stale = _timer(old)
    _put(store, stale)  # the watermark is now old's bucket
    clock = Clock(EDGE)
    scheduler = _scheduler(topology, store, clock, "a")
    assert scheduler.turn().published == 1
    # The next turn finds the old buckets empty and leaves them behind, up to the grace.
    scheduler.turn()
    assert store.watermark(EDGE) == bucket_of(EDGE - timedelta(seconds=WATERMARK_GRACE_S))


def test_a_published_job_is_queued_in_the_ledger_with_its_due_time(
    topology: Topology, store: TimerStore
) -> None:
    timer = _timer(EDGE)
    _put(store, timer)
    _scheduler(topology, store, Clock(EDGE), "a").turn()
    ledger = ledger_for(topology)
    assert ledger is not None
    record = ledger.get(timer.job_id)
    assert record is not None
    assert record.state == "queued"
    assert record.due_at == EDGE
    assert record.key_name == "alpha"  # the key that enqueued it still reads its status


def test_two_replicas_turning_one_after_the_other_publish_each_job_once(
    topology: Topology, store: TimerStore, received: Callable[[], list[dict[str, object]]]
) -> None:
    timers = [_timer(EDGE) for _ in range(40)]
    _put(store, *timers)
    clock = Clock(EDGE)
    replicas = [_scheduler(topology, store, clock, name) for name in ("a", "b")]
    # The replicas turn one after the other, not in threads: in-process moto does not make
    # a conditional update atomic across threads (DynamoDB does), so a thread race here
    # would test moto. Replicas racing in separate processes against a moto server are
    # tests/e2e/test_delayed_jobs.py's (one of them killed half-way).
    results = [replica.turn() for _ in range(3) for replica in replicas]
    assert sum(r.published for r in results) == 40
    ids = [str(body["id"]) for body in received()]
    assert sorted(ids) == sorted(t.job_id for t in timers)  # each once
    assert all(store.get(t.job_id) is None for t in timers)
