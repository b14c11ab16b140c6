"""queues.yaml ``schedules:``: the model, the static checks, payload validation by check_imports."""

from __future__ import annotations

import pytest

from infra.cron import Cron, Every
from infra.topology import TopologyError, check_imports, parse_topology

BASE = """
project: demo
topics:
  media: {}
queues:
  images:
    subscriptions: [{topic: media}]
job_types:
  image.resize: {topic: media, payload: "sample_jobs.payloads:ResizeImage", handler: "m:f"}
"""

RESIZE = {"image_url": "https://example.com/a.png", "width_px": 64}


def with_schedules(block: str) -> str:
    return BASE + "schedules:\n" + "\n".join("  " + line for line in block.strip().splitlines())


def problems_of(block: str) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        parse_topology(with_schedules(block), source="queues.yaml")
    return str(caught.value).splitlines()


def test_a_cron_and_an_every_schedule_load() -> None:
    t = parse_topology(
        with_schedules(
            """
nightly:
  cron: "30 2 * * *"
  timezone: Europe/Berlin
  job_type: image.resize
  data: {image_url: "https://example.com/a.png", width_px: 64}
  misfire: catch_up
  catch_up_limit: 3
  jitter_s: 10s
tick:
  every: 5m
  job_type: image.resize
  enabled: false
"""
        )
    )
    nightly, tick = t.schedules["nightly"], t.schedules["tick"]
    assert isinstance(nightly.recurrence(), Cron)
    assert nightly.catch_up_count == 3
    assert nightly.jitter_s == 10
    assert tick.every == 300
    assert isinstance(tick.recurrence(), Every)
    assert tick.catch_up_count == 0
    assert tick.enabled is False
    assert tick.misfire_grace_s == 60


def test_aliases_are_expanded_and_catch_up_has_a_default_limit() -> None:
    t = parse_topology(
        with_schedules("h: {cron: '@hourly', job_type: image.resize, misfire: catch_up}")
    )
    assert t.schedules["h"].cron == "0 * * * *"
    assert t.schedules["h"].catch_up_count == 10


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            "s: {job_type: image.resize}",
            "queues.yaml: schedules.s: set exactly one of cron and every",
        ),
        (
            "s: {cron: '@daily', every: 1m, job_type: image.resize}",
            "queues.yaml: schedules.s: set exactly one of cron and every",
        ),
        (
            "s: {cron: '61 * * * *', job_type: image.resize}",
            "queues.yaml: schedules.s.cron: cron expression '61 * * * *': bad minute field",
        ),
        (
            "s: {cron: '* * *', job_type: image.resize}",
            "queues.yaml: schedules.s.cron: cron expression '* * *' has 3 fields, not 5"
            " (minute hour day-of-month month day-of-week)",
        ),
        (
            "s: {cron: '@daily', timezone: Mars/Base, job_type: image.resize}",
            "queues.yaml: schedules.s.timezone: unknown timezone 'Mars/Base' (an IANA name such"
            " as 'UTC' or 'Europe/Berlin')",
        ),
        (
            "s: {every: 1.5s, job_type: image.resize}",
            "queues.yaml: schedules.s.every: 1.5s is not a whole number of seconds",
        ),
        (
            "s: {every: 0, job_type: image.resize}",
            "queues.yaml: schedules.s.every: invalid duration 0: must be between 1s and 366d",
        ),
        (
            "s: {every: 1m, timezone: Europe/Berlin, job_type: image.resize}",
            "queues.yaml: schedules.s: timezone applies to cron schedules only (every counts"
            " from the Unix epoch in UTC; use cron for wall-clock times)",
        ),
        (
            "s: {every: 1m, job_type: image.resize, catch_up_limit: 3}",
            "queues.yaml: schedules.s: catch_up_limit applies to misfire: catch_up only",
        ),
        (
            "s: {every: 1m, job_type: image.resize, misfire: later}",
            "queues.yaml: schedules.s.misfire: Input should be 'skip' or 'catch_up'",
        ),
        (
            "s: {every: 10s, job_type: image.resize, jitter_s: 10}",
            "queues.yaml: schedules.s: jitter_s (10) must be below every (10s): a tick would"
            " fire after the next one",
        ),
        (
            "s: {every: 1m, job_type: image.resize, cronn: x}",
            "queues.yaml: schedules.s.cronn: unknown key 'cronn' (allowed: catch_up_limit, cron,"
            " data, description, enabled, every, jitter_s, job_type, misfire, misfire_grace_s,"
            " timezone)",
        ),
        (
            "s: {every: 1m}",
            "queues.yaml: schedules.s.job_type: required key is missing",
        ),
        (
            "s: {every: 1m, job_type: image.crop}",
            "queues.yaml: schedules.s.job_type: unknown job type 'image.crop' (known:"
            " image.resize)",
        ),
        (
            "Bad Name: {every: 1m, job_type: image.resize}",
            "queues.yaml: schedules.Bad Name.[key]: String should match pattern"
            " '^[a-z0-9][a-z0-9_-]{0,39}$'",
        ),
    ],
)
def test_static_checks_are_one_line_each(block: str, expected: str) -> None:
    assert problems_of(block) == [expected]


def test_check_imports_validates_data_against_the_payload_model() -> None:
    good = parse_topology(
        with_schedules(f"s: {{every: 1m, job_type: image.resize, data: {RESIZE}}}")
    )
    check_imports(good, handlers=False)
    bad = parse_topology(
        with_schedules("s: {every: 1m, job_type: image.resize, data: {width_px: wide}}")
    )
    with pytest.raises(TopologyError) as caught:
        check_imports(bad, source="queues.yaml", handlers=False)
    [line] = str(caught.value).splitlines()
    assert line.startswith("queues.yaml: schedules.s.data: not a valid image.resize payload: ")
    assert "image_url: Field required" in line
    assert "width_px: " in line
