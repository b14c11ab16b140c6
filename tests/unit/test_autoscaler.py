"""The autoscaler's decisions, with time passed in: out at once, in only after the cooldown."""

from __future__ import annotations

import pytest

from infra.topology.model import Autoscale, Pool, Replicas
from ops.scaling.autoscaler import PoolPolicy
from ops.scaling.backlog import Backlog

POOL = Pool(
    queues=["work"],
    replicas=Replicas(min=1, max=5),
    autoscale=Autoscale(
        target_backlog_per_worker=10,
        scale_out_cooldown_s=30,
        scale_in_cooldown_s=60,
        interval_s=5,
    ),
)


def backlog(visible: int, in_flight: int = 0) -> Backlog:
    return Backlog(visible=visible, in_flight=in_flight)


@pytest.mark.parametrize(
    ("total", "expected"),
    [(0, 1), (1, 1), (10, 1), (11, 2), (35, 4), (50, 5), (10_000, 5)],
)
def test_recommendation_is_ceil_of_backlog_over_target_within_bounds(
    total: int, expected: int
) -> None:
    assert PoolPolicy("p", POOL, 0).recommend(total) == expected


def test_in_flight_counts_as_backlog() -> None:
    decision = PoolPolicy("p", POOL, 0).decide(0, backlog(5, in_flight=20), current=1)
    assert (decision.action, decision.desired, decision.backlog) == ("scale_out", 3, 25)


def test_scale_out_is_immediate_then_waits_for_its_cooldown() -> None:
    policy = PoolPolicy("p", POOL, 0)
    first = policy.decide(0, backlog(30), current=1)
    assert (first.action, first.current, first.desired) == ("scale_out", 1, 3)
    held = policy.decide(10, backlog(50), current=3)
    assert (held.action, held.desired) == ("hold", 3)
    assert held.reason == "scale-out cooldown: 20.0 s left of 30 s"
    later = policy.decide(30, backlog(50), current=3)
    assert (later.action, later.desired) == ("scale_out", 5)


def test_scale_in_waits_until_the_backlog_stayed_low_for_the_cooldown() -> None:
    policy = PoolPolicy("p", POOL, 0)
    policy.decide(0, backlog(40), current=1)  # out to 4
    policy.decide(50, backlog(40), current=4)
    early = policy.decide(60, backlog(0), current=4)
    assert early.action == "hold"
    assert early.reason == "backlog low for 10.0 s of the 60 s scale-in cooldown"
    assert policy.decide(100, backlog(0), current=4).action == "hold"
    done = policy.decide(111, backlog(0), current=4)  # the last high sample (50 s) has aged out
    assert (done.action, done.current, done.desired) == ("scale_in", 4, 1)
    assert done.reason == "backlog low for the 60 s scale-in cooldown"


def test_scale_in_goes_to_the_highest_recommendation_of_the_window() -> None:
    policy = PoolPolicy("p", POOL, 0)
    for t, total in [(0, 50), (20, 50), (70, 25)]:
        policy.decide(t, backlog(total), current=5)
    decision = policy.decide(75, backlog(0), current=5)
    assert decision.action == "hold"  # the 50 at t=20 is still inside the window
    decision = policy.decide(81, backlog(0), current=5)
    assert (decision.action, decision.desired) == ("scale_in", 3)  # 25 at t=70 → 3 nodes


def test_no_scale_in_before_watching_for_a_whole_cooldown() -> None:
    policy = PoolPolicy("p", POOL, 100)
    decision = policy.decide(130, backlog(0), current=4)
    assert decision.action == "hold"
    assert decision.reason == (
        "backlog low, but watched for only 30.0 s of the 60 s scale-in cooldown"
    )


def test_out_of_bounds_desired_is_brought_back() -> None:
    policy = PoolPolicy("p", POOL, 0)
    assert policy.decide(0, backlog(0), current=0).desired == 1  # below min: out at once
    policy = PoolPolicy("p", POOL, 0)
    policy.decide(0, backlog(0), current=9)
    assert policy.decide(60, backlog(0), current=9).desired == 1  # above max: in after cooldown


def test_a_decision_renders_with_its_inputs() -> None:
    decision = PoolPolicy("media", POOL, 0).decide(0, backlog(30, in_flight=2), current=1)
    assert decision.render() == (
        "media: scale-out 1 → 4  backlog 32 (visible 30, in flight 2) / target 10 → 4 [1..5]:"
        " backlog above target"
    )
