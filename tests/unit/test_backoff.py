"""The retry schedule: exponential, capped, jittered, whole seconds."""

from __future__ import annotations

import random

import pytest

from infra.backoff import backoff_delay_s
from infra.topology import Backoff


def test_exponential_schedule_without_jitter_doubles_then_caps() -> None:
    policy = Backoff(base_s=1, max_s=30, jitter="none")
    assert [backoff_delay_s(a, policy) for a in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_fractional_delays_round_up_to_whole_seconds() -> None:
    policy = Backoff(base_s=0.2, max_s=10, jitter="none")
    assert [backoff_delay_s(a, policy) for a in (1, 2, 3, 4)] == [1, 1, 1, 2]


def test_equal_jitter_stays_between_half_and_all_of_the_delay() -> None:
    policy = Backoff(base_s=10, max_s=1000, jitter="equal")
    rng = random.Random(7)
    for attempt in range(1, 8):
        full = min(1000, 10 * 2 ** (attempt - 1))
        delays = {backoff_delay_s(attempt, policy, rng) for _ in range(200)}
        assert min(delays) >= full // 2
        assert max(delays) <= full
        assert len(delays) > 1  # it is actually jittered


def test_full_jitter_spans_up_to_the_delay_never_an_immediate_retry() -> None:
    policy = Backoff(base_s=8, max_s=8, jitter="full")
    rng = random.Random(3)
    delays = {backoff_delay_s(5, policy, rng) for _ in range(500)}
    assert min(delays) == 1  # (0, 1] rounds up: whole seconds
    assert max(delays) == 8


def test_huge_attempt_numbers_do_not_overflow_and_respect_sqs_limit() -> None:
    policy = Backoff(base_s=1, max_s=12 * 3600, jitter="none")
    assert backoff_delay_s(10_000, policy) == 43_200


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        backoff_delay_s(0, Backoff())
