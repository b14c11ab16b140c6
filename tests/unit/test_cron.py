"""infra.cron: tick math, aliases, intervals, the DST rule, bad expressions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from infra.cron import (
    ALIASES,
    Cron,
    CronError,
    Every,
    jitter_offset_s,
    normalize_cron,
    parse_tick_id,
    recurrence,
    tick_id,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def local(ticks: list[datetime], tz: ZoneInfo = BERLIN) -> list[str]:
    return [t.astimezone(tz).isoformat() for t in ticks]


# --- DST: a 02:30 Europe/Berlin daily schedule --------------------------------------------


def test_spring_forward_fires_once_at_the_first_existing_minute() -> None:
    # 2027-03-28: clocks jump from 02:00 CET to 03:00 CEST; 02:30 does not exist.
    daily = Cron("30 2 * * *", "Europe/Berlin")
    ticks = daily.ticks_between(utc(2027, 3, 27, 12), utc(2027, 3, 29, 12))
    assert local(ticks) == ["2027-03-28T03:00:00+02:00", "2027-03-29T02:30:00+02:00"]
    assert ticks[0] == utc(2027, 3, 28, 1, 0)


def test_fall_back_fires_once_at_the_first_occurrence() -> None:
    # 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    daily = Cron("30 2 * * *", "Europe/Berlin")
    ticks = daily.ticks_between(utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert local(ticks) == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_fall_back_next_after_the_first_occurrence_is_the_next_day() -> None:
    daily = Cron("30 2 * * *", "Europe/Berlin")
    first = utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    # From between the two 02:30s (01:15 UTC is 02:15 CET, the repeated hour): not again.
    assert daily.next_after(first) == utc(2026, 10, 26, 1, 30)
    assert daily.next_after(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)
    assert daily.next_after(utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 26, 1, 30)


def test_hourly_jobs_follow_elapsed_time_across_dst() -> None:
    hourly = Cron("@hourly", "Europe/Berlin")
    fall = hourly.ticks_between(utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 30))
    # Three real hours, two of them called 02:00.
    assert local(fall) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]
    spring = hourly.ticks_between(utc(2027, 3, 27, 23, 30), utc(2027, 3, 28, 1, 30))
    assert local(spring) == ["2027-03-28T01:00:00+01:00", "2027-03-28T03:00:00+02:00"]


def test_timezone_shifts_the_wall_clock() -> None:
    at_nine = Cron("0 9 * * *", "America/New_York")
    assert at_nine.next_after(utc(2026, 7, 1)) == utc(2026, 7, 1, 13)  # EDT, UTC-4
    assert at_nine.next_after(utc(2026, 12, 1)) == utc(2026, 12, 1, 14)  # EST, UTC-5


# --- cron expressions and aliases -----------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "after", "expected"),
    [
        ("@hourly", utc(2026, 5, 5, 10, 20), utc(2026, 5, 5, 11)),
        ("@daily", utc(2026, 5, 5, 10, 20), utc(2026, 5, 6)),
        ("@midnight", utc(2026, 5, 5, 10, 20), utc(2026, 5, 6)),
        ("@weekly", utc(2026, 5, 5, 10, 20), utc(2026, 5, 10)),  # a Sunday
        ("@monthly", utc(2026, 5, 5, 10, 20), utc(2026, 6, 1)),
        ("@yearly", utc(2026, 5, 5, 10, 20), utc(2027, 1, 1)),
        ("@annually", utc(2026, 5, 5, 10, 20), utc(2027, 1, 1)),
        ("@DAILY", utc(2026, 5, 5, 10, 20), utc(2026, 5, 6)),
    ],
)
def test_aliases(alias: str, after: datetime, expected: datetime) -> None:
    assert Cron(alias).next_after(after) == expected


def test_aliases_expand_to_five_fields() -> None:
    assert all(len(expr.split()) == 5 for expr in ALIASES.values())
    assert normalize_cron("@weekly") == "0 0 * * 0"


def test_expression_features() -> None:
    # Lists, ranges, steps, names; day fields OR-ed when both are restricted.
    assert Cron("*/15 9-10 * * mon-fri").ticks_between(
        utc(2026, 5, 8, 10, 40), utc(2026, 5, 11, 9, 20)
    ) == [utc(2026, 5, 8, 10, 45), utc(2026, 5, 11, 9), utc(2026, 5, 11, 9, 15)]
    either = Cron("0 0 13 * fri").ticks_between(utc(2026, 2, 1), utc(2026, 2, 28))
    assert [t.day for t in either] == [6, 13, 20, 27]
    assert Cron("0 12 1 jan,jul *").next_after(utc(2026, 2, 1)) == utc(2026, 7, 1, 12)


def test_next_after_is_strictly_after() -> None:
    minutely = Cron("* * * * *")
    assert minutely.next_after(utc(2026, 1, 1, 0, 0)) == utc(2026, 1, 1, 0, 1)
    assert minutely.next_after(utc(2026, 1, 1, 0, 0, 30)) == utc(2026, 1, 1, 0, 1)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * *", "has 3 fields, not 5"),
        ("0 0 * * * *", "has 6 fields, not 5"),
        ("", "has 0 fields, not 5"),
        ("61 * * * *", "bad minute field"),
        ("0 24 * * *", "bad hour field"),
        ("0 0 32 * *", "bad day-of-month field"),
        ("0 0 * 13 *", "bad month field"),
        ("0 0 * * 8", "bad day-of-week field"),
        ("*/0 * * * *", "bad minute field"),
        ("5-1 * * * *", "bad minute field"),
        ("x * * * *", "bad minute field"),
        ("0 0 31 2 *", "bad day-of-month field"),  # never fires
        ("@reboot", "unknown cron alias '@reboot'"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        Cron(expression)


def test_unknown_timezone() -> None:
    with pytest.raises(CronError, match="unknown timezone 'Mars/Olympus'"):
        Cron("@daily", "Mars/Olympus")


# --- every ------------------------------------------------------------------------------------


def test_every_is_aligned_to_the_epoch() -> None:
    five = Every(300)
    assert five.next_after(utc(2026, 1, 1, 0, 3, 10)) == utc(2026, 1, 1, 0, 5)
    assert five.next_after(utc(2026, 1, 1, 0, 5)) == utc(2026, 1, 1, 0, 10)
    assert Every(86400).next_after(utc(2026, 1, 1, 13)) == utc(2026, 1, 2)
    second = Every(1).ticks_between(utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 3))
    assert second == [utc(2026, 1, 1, 0, 0, s) for s in (1, 2, 3)]


def test_every_rejects_fractions_and_zero() -> None:
    with pytest.raises(CronError):
        Every(0)
    with pytest.raises(CronError, match="whole number"):
        recurrence(cron=None, every_s=1.5)
    with pytest.raises(CronError, match="exactly one"):
        recurrence(cron="@daily", every_s=60)


# --- windows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rec", [Every(60), Every(7), Cron("*/5 * * * *", "Europe/Berlin")])
def test_last_ticks_matches_the_tail_of_the_window(rec: Cron | Every) -> None:
    start, end = utc(2026, 10, 24, 22), utc(2026, 10, 25, 3, 0, 30)
    everything = rec.ticks_between(start, end)
    for count in (1, 3, 50):
        assert rec.last_ticks(start, end, count) == everything[-count:]
    assert rec.last_ticks(end, end, 3) == []
    assert rec.last_ticks(start, end, 0) == []


def test_last_ticks_looks_back_far_for_a_rare_schedule() -> None:
    yearly = Cron("@yearly")
    assert yearly.last_ticks(utc(2020, 6, 1), utc(2026, 6, 1), 2) == [
        utc(2025, 1, 1),
        utc(2026, 1, 1),
    ]


def test_ticks_between_is_bounded() -> None:
    assert len(Every(1).ticks_between(utc(2026, 1, 1), utc(2026, 2, 1), limit=5)) == 5


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        Every(60).next_after(datetime(2026, 1, 1))


# --- ids and jitter ---------------------------------------------------------------------------


def test_tick_ids_round_trip_in_utc() -> None:
    tick = datetime(2027, 3, 28, 3, 0, tzinfo=BERLIN)
    assert tick_id(tick) == "2027-03-28T01:00:00Z"
    assert parse_tick_id(tick_id(tick)) == tick


def test_jitter_is_deterministic_and_bounded() -> None:
    offsets = [jitter_offset_s(f"nightly/{i}", 30.0) for i in range(200)]
    assert offsets == [jitter_offset_s(f"nightly/{i}", 30.0) for i in range(200)]
    assert all(0 <= o < 30 for o in offsets)
    assert len(set(offsets)) > 150  # spread, not one value
    assert jitter_offset_s("x", 0) == 0
    assert timedelta(seconds=max(offsets)) < timedelta(seconds=30)
