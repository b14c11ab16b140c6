"""The shared exponential backoff (infra.backoff) and the waits built on it."""

from __future__ import annotations

import random

import pytest

from infra.backoff import exponential_delay_s
from ops.scaling.supervisor import RestartBackoff
from producers.client import Retry


def test_without_jitter_the_delay_doubles_from_the_base() -> None:
    assert [exponential_delay_s(a, base_s=0.05) for a in (1, 2, 3, 4)] == [0.05, 0.1, 0.2, 0.4]


def test_the_cap_bounds_the_delay() -> None:
    delays = [exponential_delay_s(a, base_s=1, cap_s=5) for a in range(1, 6)]
    assert delays == [1, 2, 4, 5, 5]


def test_a_huge_attempt_number_does_not_overflow() -> None:
    assert exponential_delay_s(100_000, base_s=1, cap_s=60) == 60


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_count_from_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        exponential_delay_s(attempt, base_s=1)


def test_full_jitter_draws_from_zero_to_the_delay() -> None:
    rng = random.Random(11)
    delays = [exponential_delay_s(4, base_s=1, jitter="full", rng=rng) for _ in range(500)]
    assert all(0 <= d <= 8 for d in delays)
    assert min(delays) < 2
    assert max(delays) > 6  # spread over the range, not a constant


def test_equal_jitter_draws_from_half_to_all_of_the_delay() -> None:
    rng = random.Random(12)
    delays = [
        exponential_delay_s(3, base_s=1, cap_s=3, jitter="equal", rng=rng) for _ in range(500)
    ]
    assert all(1.5 <= d <= 3 for d in delays)
    assert min(delays) < 2
    assert max(delays) > 2.5


def test_a_seeded_random_source_makes_the_jitter_reproducible() -> None:
    def schedule(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [exponential_delay_s(a, base_s=1, jitter="full", rng=rng) for a in range(1, 9)]

    assert schedule(5) == schedule(5)
    assert schedule(5) != schedule(6)


def test_the_clients_wait_is_equal_jitter_under_its_cap() -> None:
    retry = Retry(base_s=1, cap_s=4)
    for attempt, full in [(1, 1), (2, 2), (3, 4), (4, 4), (9, 4)]:
        waits = [retry.delay_s(attempt, None) for _ in range(200)]
        assert all(full / 2 <= w <= full for w in waits)
    assert retry.delay_s(3, retry_after_s=2.5) == 2.5
    assert retry.delay_s(3, retry_after_s=99) == 4


def test_the_supervisors_restart_delay_has_no_jitter() -> None:
    backoff = RestartBackoff(base_s=0.5, max_s=30)
    assert [backoff.delay_s(n) for n in (0, 1, 2, 7, 8)] == [0.5, 0.5, 1, 30, 30]
