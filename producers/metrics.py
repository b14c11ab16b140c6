"""The producer API's Prometheus metrics, served at ``/metrics``.

Their own registry (not prometheus_client's global one), so a worker and an API
in one process (tests, the Lambda adapter) never collide. Job types are label
values only when declared in queues.yaml (``unknown`` otherwise), so a client
cannot grow the label set with made-up types.
"""

from __future__ import annotations

from collections.abc import Container

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from producers.enqueue import Outcome

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

JOBS_ACCEPTED = Counter(
    "conveyor_api_jobs_accepted_total",
    "Jobs SNS accepted (duplicate: a repeated idempotency key, nothing published).",
    ["job_type", "duplicate"],
    registry=REGISTRY,
)
JOBS_REJECTED = Counter(
    "conveyor_api_jobs_rejected_total",
    "Jobs not accepted, by reason (invalid, unknown_type, forbidden, too_large, conflict,"
    " in_progress, unavailable).",
    ["job_type", "reason"],
    registry=REGISTRY,
)
REQUESTS_REJECTED = Counter(
    "conveyor_api_requests_rejected_total",
    "Requests refused before their jobs were looked at (unauthorized, rate_limited).",
    ["reason"],
    registry=REGISTRY,
)
PUBLISH_SECONDS = Histogram(
    "conveyor_api_publish_seconds",
    "Duration of one SNS Publish or PublishBatch call.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
BATCH_JOBS = Histogram(
    "conveyor_api_batch_jobs",
    "Jobs per POST /v1/jobs request.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
    registry=REGISTRY,
)


class ApiMetrics:
    """Records outcomes with bounded labels for one topology's job types."""

    def __init__(self, job_types: Container[str]) -> None:
        self.job_types = job_types

    def _type(self, job_type: str | None) -> str:
        return job_type if job_type is not None and job_type in self.job_types else "unknown"

    def outcome(self, outcome: Outcome) -> None:
        """Count one job's outcome."""
        if outcome.accepted:
            JOBS_ACCEPTED.labels(self._type(outcome.job_type), str(outcome.duplicate).lower()).inc()
        else:
            JOBS_REJECTED.labels(self._type(outcome.job_type), outcome.reason).inc()

    def request_rejected(self, reason: str) -> None:
        """Count a request refused as a whole (401, 429)."""
        REQUESTS_REJECTED.labels(reason).inc()

    def publish_call(self, duration_s: float) -> None:
        """Observe one SNS call."""
        PUBLISH_SECONDS.observe(duration_s)

    def batch(self, size: int) -> None:
        """Observe the size of one batch request."""
        BATCH_JOBS.observe(size)


def exposition() -> bytes:
    """The metrics in Prometheus' text format."""
    return generate_latest(REGISTRY)
