"""The scheduler's Prometheus metrics, served at ``/metrics`` (their own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

DUE_BACKLOG = Gauge(
    "conveyor_scheduler_due_backlog",
    "Due delayed jobs the last turn found (published or not): what is waiting now.",
    registry=REGISTRY,
)
LATENESS_SECONDS = Histogram(
    "conveyor_scheduler_lateness_seconds",
    "How long after its due time a delayed job was published (SNS accepted it).",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 3600),
    registry=REGISTRY,
)
PUBLISHED = Counter(
    "conveyor_scheduler_published_total",
    "Delayed jobs published by this scheduler.",
    registry=REGISTRY,
)
CLAIMS_LOST = Counter(
    "conveyor_scheduler_claims_lost_total",
    "Due jobs another replica claimed first (or that were gone: cancelled, published).",
    registry=REGISTRY,
)
PUBLISH_FAILURES = Counter(
    "conveyor_scheduler_publish_failures_total",
    "Claimed jobs SNS did not accept (released, retried after a pause).",
    registry=REGISTRY,
)
TICK_ERRORS = Counter(
    "conveyor_scheduler_tick_errors_total",
    "Turns in which a tick source (cron schedules) raised.",
    registry=REGISTRY,
)
TURNS = Counter(
    "conveyor_scheduler_turns_total",
    "Turns of the scheduler's loop.",
    registry=REGISTRY,
)


#: Other registries served at the same ``/metrics`` (the cron schedules' counters).
_ALSO: list[CollectorRegistry] = []


def also_expose(registry: CollectorRegistry) -> None:
    """Serve ``registry`` beside the scheduler's own metrics."""
    if registry not in _ALSO:
        _ALSO.append(registry)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type."""
    return generate_latest(REGISTRY) + b"".join(generate_latest(r) for r in _ALSO), CONTENT_TYPE
