"""The cron schedules' Prometheus metrics (served by the scheduler role's ``/metrics``).

Their own registry, like the producer API's (:mod:`producers.metrics`): the scheduler
role exposes it beside its own (``generate_latest(REGISTRY)``). The ``schedule`` label
only takes names declared in queues.yaml, so its values are bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry(auto_describe=True)

TICKS_FIRED = Counter(
    "conveyor_schedule_ticks_fired_total",
    "Schedule ticks this replica claimed and published (manual triggers not included).",
    ["schedule"],
    registry=REGISTRY,
)
CLAIMS_LOST = Counter(
    "conveyor_schedule_claims_lost_total",
    "Ticks this replica tried to claim that another replica had claimed first.",
    ["schedule"],
    registry=REGISTRY,
)
TICKS_SKIPPED = Counter(
    "conveyor_schedule_ticks_skipped_total",
    "Ticks not fired: missed (no scheduler within misfire_grace_s, misfire: skip or"
    " beyond catch_up_limit) or paused.",
    ["schedule", "reason"],
    registry=REGISTRY,
)
PUBLISH_FAILURES = Counter(
    "conveyor_schedule_publish_failures_total",
    "Claimed ticks whose publish failed (the claim is released and tried again).",
    ["schedule"],
    registry=REGISTRY,
)
STORE_FAILURES = Counter(
    "conveyor_schedule_store_failures_total",
    "Turns of a schedule cut short because the timer table could not be read or written.",
    ["schedule"],
    registry=REGISTRY,
)
