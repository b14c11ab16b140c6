"""The visibility heartbeat: received messages stay invisible while their jobs run.

Without it, a job that outlives its queue's visibility timeout is handed to a
second worker and runs twice. The consumer tracks a lease per received message
and, from its event loop, extends every lease that has used half of its
visibility timeout (ChangeMessageVisibilityBatch, 10 per call), until the job
type's ``max_runtime_s`` (or SQS's 12 hours) is reached. Then it stops extending:
the message becomes visible again and the attempt counts as failed.

On the ``solo`` pool the beats come from a thread of their own
(:meth:`Heartbeat.run_in_background`): a job runs in the consumer loop's thread,
which then does not turn until the job ends, so a job longer than its visibility
timeout was handed to a second node and ran twice.

A node receives up to 10 messages at a time and holds the ones its pool cannot
start yet, so ``max_runtime_s`` counts from when the job starts (:meth:`Heartbeat.start`),
not from the receive; a held message is kept invisible meanwhile, up to SQS's
12-hour ceiling.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from infra.limits import MAX_VISIBILITY_TIMEOUT_S

log = structlog.stdlib.get_logger("conveyor.worker")

#: Extend a lease once this fraction of its visibility timeout has passed.
EXTEND_AT_FRACTION = 0.5


@dataclass
class Lease:
    """One received message the consumer holds."""

    queue_url: str
    receipt_handle: str
    visibility_timeout_s: int
    received_at: float
    #: When to stop extending (monotonic): max runtime, or SQS's 12 h ceiling.
    deadline: float
    extended_at: float = 0.0
    #: The job type's limit, applied from :meth:`begin` (None: SQS's ceiling only).
    max_runtime_s: float | None = None
    started_at: float | None = None

    def begin(self, now: float) -> None:
        """The job started: its runtime limit counts from now."""
        self.started_at = now
        if self.max_runtime_s is not None:
            self.deadline = min(self.deadline, now + self.max_runtime_s)

    def due(self, now: float) -> bool:
        """Whether the lease should be extended now."""
        last = self.extended_at or self.received_at
        return now < self.deadline and now - last >= self.visibility_timeout_s * EXTEND_AT_FRACTION


def new_lease(
    queue_url: str, receipt_handle: str, visibility_timeout_s: int, max_runtime_s: float | None
) -> Lease:
    """A lease from now; ``max_runtime_s`` (None: SQS's 12-hour ceiling) applies from ``begin``."""
    now = time.monotonic()
    limit_s = min(max_runtime_s or MAX_VISIBILITY_TIMEOUT_S, MAX_VISIBILITY_TIMEOUT_S)
    return Lease(
        queue_url,
        receipt_handle,
        visibility_timeout_s,
        now,
        now + MAX_VISIBILITY_TIMEOUT_S,
        max_runtime_s=limit_s,
    )


class Heartbeat:
    """Tracks leases and extends the due ones; thread-safe (acks come from pool threads)."""

    def __init__(self, client_for: Callable[[str], Any]) -> None:
        self._client_for = client_for
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_in_background(self, interval_s: float) -> None:
        """Beat every ``interval_s`` from a daemon thread until :meth:`stop_background`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat_until_stopped, args=(interval_s,), name="heartbeat", daemon=True
        )
        self._thread.start()

    def stop_background(self) -> None:
        """Stop the background beats (a beat in progress finishes on its own)."""
        self._stop.set()
        self._thread = None

    def _beat_until_stopped(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.beat()
            except Exception:  # never let one bad beat end the heartbeat for good
                log.exception("heartbeat.crashed")

    def track(self, lease: Lease) -> None:
        """Start keeping ``lease``'s message invisible."""
        with self._lock:
            self._leases[lease.receipt_handle] = lease

    def start(self, receipt_handle: str) -> None:
        """The message's job started: from now its runtime limit applies."""
        now = time.monotonic()
        with self._lock:
            lease = self._leases.get(receipt_handle)
            if lease is not None and lease.started_at is None:
                lease.begin(now)

    def forget(self, receipt_handle: str) -> None:
        """Stop: the message was deleted, released or handed back."""
        with self._lock:
            self._leases.pop(receipt_handle, None)

    def held(self) -> int:
        """Messages currently held (in flight on this node)."""
        with self._lock:
            return len(self._leases)

    def beat(self) -> int:
        """Extend every due lease now; returns how many were extended."""
        now = time.monotonic()
        by_queue: dict[str, list[Lease]] = defaultdict(list)
        with self._lock:
            for lease in self._leases.values():
                if lease.due(now):
                    by_queue[lease.queue_url].append(lease)
        extended = 0
        for queue_url, leases in by_queue.items():
            for start in range(0, len(leases), 10):
                extended += self._extend(queue_url, leases[start : start + 10], now)
        return extended

    def _extend(self, queue_url: str, leases: list[Lease], now: float) -> int:
        entries = [
            {
                "Id": str(i),
                "ReceiptHandle": lease.receipt_handle,
                # Never past the deadline: at max runtime the message must come back.
                "VisibilityTimeout": max(
                    1, min(lease.visibility_timeout_s, int(lease.deadline - now))
                ),
            }
            for i, lease in enumerate(leases)
        ]
        try:
            response = self._client_for(queue_url).change_message_visibility_batch(
                QueueUrl=queue_url, Entries=entries
            )
        except (ClientError, BotoCoreError) as exc:
            # Tried again on the next beat, while half of the timeout still remains.
            log.warning("heartbeat.failed", queue_url=queue_url, error=str(exc))
            return 0
        failed = {f["Id"] for f in response.get("Failed") or []}
        if failed:
            log.warning("heartbeat.entries_failed", queue_url=queue_url, count=len(failed))
        for i, lease in enumerate(leases):
            if str(i) not in failed:
                lease.extended_at = now
        return len(leases) - len(failed)
