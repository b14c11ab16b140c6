"""The sample workload and its summary.

Jobs go in through the producer API over HTTP, like any client's. Outcomes are
read back from the workers' structured logs (``job.succeeded``,
``job.retry_scheduled``, ``job.dead_lettered`` events, one per delivery).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from producers.client import ConveyorClient, EnqueueError

#: (job type, payload, how many): every sample job type, plus one invalid request.
SAMPLE_WORKLOAD: list[tuple[str, dict[str, Any], int]] = [
    ("image.resize", {"image_url": "https://example.com/cat.png", "width_px": 640}, 10),
    ("image.thumbnail", {"image_url": "https://example.com/cat.png", "size_px": 96}, 10),
    (
        "order.placed",
        {"order_id": "o-1001", "customer_email": "ada@example.com", "amount": "42.50"},
        5,
    ),
    ("email.send", {"to": "grace@example.com", "subject": "Welcome"}, 5),
    ("invoice.render", {"order_id": "o-1001"}, 3),
    # Rejected by the API with 422 (width must be positive): never published.
    ("image.resize", {"image_url": "https://example.com/cat.png", "width_px": -1}, 1),
]
#: How many of the sample's jobs are invalid on purpose (the last entry: a 422).
DELIBERATELY_INVALID = SAMPLE_WORKLOAD[-1][2]


@dataclass
class Summary:
    """What happened to the sample workload."""

    accepted: int = 0
    rejected: int = 0
    #: Accepted jobs times the queues each fans out to.
    deliveries: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    rejections: list[str] = field(default_factory=list)
    unfinished: int = 0
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-friendly data."""
        return asdict(self)

    def render(self) -> str:
        """A short human report."""
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.dead_letter_reasons.items()))
        lines = [
            f"accepted       {self.accepted} jobs ({self.deliveries} deliveries after fan-out)",
            f"rejected       {self.rejected} ({'; '.join(self.rejections) or 'none'})"
            + (
                " — on purpose: the sample includes an invalid payload"
                if self.rejected == DELIBERATELY_INVALID
                else ""
            ),
            f"succeeded      {self.succeeded}",
            f"retried        {self.retried} times (backoff via visibility timeout)",
            f"dead-lettered  {self.dead_lettered} ({reasons or 'none'})",
            f"unfinished     {self.unfinished}",
            f"elapsed        {self.elapsed_s:.1f} s",
        ]
        return "\n".join(lines)


def submit_sample_workload(api_url: str, summary: Summary) -> set[str]:
    """POST the sample workload; returns the accepted job ids."""
    accepted: set[str] = set()
    with ConveyorClient(api_url) as client:
        for job_type, payload, count in SAMPLE_WORKLOAD:
            for _ in range(count):
                try:
                    result = client.enqueue(job_type, payload)
                except EnqueueError as exc:
                    summary.rejected += 1
                    summary.rejections.append(f"{job_type}: HTTP {exc.status_code}")
                    continue
                accepted.add(result.id)
                summary.accepted += 1
                summary.deliveries += len(result.queues)
    return accepted


def _events(log_files: list[Path]) -> list[dict[str, Any]]:
    events = []
    for path in log_files:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    return events


def tally(log_files: list[Path], job_ids: set[str], summary: Summary) -> int:
    """Count outcomes of ``job_ids`` in the worker logs; returns finished deliveries."""
    succeeded = retried = dead = 0
    reasons: Counter[str] = Counter()
    for event in _events(log_files):
        if event.get("job_id") not in job_ids:
            continue
        name = event.get("event")
        if name == "job.succeeded":
            succeeded += 1
        elif name == "job.retry_scheduled":
            retried += 1
        elif name == "job.dead_lettered":
            dead += 1
            reasons[str(event.get("reason"))] += 1
    summary.succeeded, summary.retried, summary.dead_lettered = succeeded, retried, dead
    summary.dead_letter_reasons = dict(reasons)
    summary.unfinished = max(0, summary.deliveries - succeeded - dead)
    return succeeded + dead


def wait_for_outcomes(
    log_files: list[Path], job_ids: set[str], summary: Summary, *, timeout_s: float
) -> bool:
    """Poll the worker logs until every delivery succeeded or was dead-lettered."""
    deadline = time.monotonic() + timeout_s
    while True:
        if tally(log_files, job_ids, summary) >= summary.deliveries:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)  # polling interval, bounded by the deadline
