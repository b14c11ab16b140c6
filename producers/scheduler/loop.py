"""The scheduler's loop: find due timers, claim, publish, delete; then the tick sources.

One turn every ``scheduling.poll_interval_s``:

1. list due timers: every shard of every bucket from the watermark up to now
   (:meth:`infra.timers.TimerStore.due_in`), shards in an order of this replica's own
   so replicas start on different partitions; move the watermark past old buckets
   found empty;
2. claim each (one conditional write, ``claim_threads`` at a time, partition by
   partition in this replica's order; a lost claim is counted, the job left alone
   for a lease, and the rest of that partition left to the replica that is working
   on it this turn — so replicas spread over partitions instead of racing for the
   same jobs);
3. publish the claimed ones (:class:`~producers.scheduler.publish.DuePublisher`), if
   their lease still holds; delete the published timers; release the others (SNS
   failed: the next turns retry them, after a pause that doubles up to 30 s);
4. call every tick source (``Callable[[datetime], int]``, e.g. the cron schedules'
   ``fire_due``); an exception is logged and counted, never fatal.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from infra.logs import get_logger
from infra.settings import SchedulingSettings
from infra.timers import (
    BUCKET_S,
    SHARDS,
    WATERMARK_GRACE_S,
    DueRef,
    Timer,
    TimerStore,
    TimerStoreError,
    bucket_of,
    partition,
)
from producers.publisher import Published
from producers.scheduler import metrics
from producers.scheduler.publish import DuePublisher

log = get_logger("conveyor.scheduler")

#: A tick source: called every turn with the current time; returns how many jobs it fired.
TickSource = Callable[[datetime], int]
#: The watermark is read again this often (a put lowers it only for a process's first
#: bucket; a running scheduler moves it itself).
WATERMARK_REFRESH_S = 10.0
#: A claim is only published with this much of its lease left: a publish (bounded by
#: the SNS timeouts) must end before another replica may take the job.
LEASE_MARGIN_S = 12.0
#: After SNS failed, publishing pauses this long, doubling up to the maximum.
PAUSE_BASE_S = 1.0
PAUSE_MAX_S = 30.0


def default_owner() -> str:
    """This replica's name in its claims: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class TurnResult:
    """What one turn did."""

    due: int = 0
    claimed: int = 0
    lost: int = 0
    published: int = 0
    failed: int = 0
    fired: int = 0
    #: Seconds spent listing, claiming, publishing (and recording), deleting.
    list_s: float = 0.0
    claim_s: float = 0.0
    publish_s: float = 0.0
    delete_s: float = 0.0


class Scheduler:
    """Publishes due delayed jobs; runs the tick sources. One per ``conveyor scheduler``."""

    def __init__(
        self,
        store: TimerStore,
        publisher: DuePublisher,
        settings: SchedulingSettings,
        *,
        tick_sources: Sequence[TickSource] = (),
        owner: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.settings = settings
        self.tick_sources = list(tick_sources)
        self.owner = owner or default_owner()
        self.clock = clock
        # Lease margin: never more than half the lease (short leases in tests).
        self._margin_s = min(LEASE_MARGIN_S, settings.lease_s / 2)
        self._pool = ThreadPoolExecutor(
            max_workers=settings.claim_threads, thread_name_prefix="claim"
        )
        # job id -> monotonic time until which a lost claim is not retried.
        self._skip: dict[str, float] = {}
        self._watermark: int | None = None
        self._watermark_read = 0.0
        self._pause_until = 0.0
        self._pause_s = PAUSE_BASE_S
        # This replica's shard order: replicas start on different index partitions.
        self._shards = list(range(SHARDS))
        random.shuffle(self._shards)
        #: Monotonic time of the last completed turn (the health check reads it).
        self.last_turn: float = time.monotonic()

    def close(self) -> None:
        """Stop the claiming threads."""
        self._pool.shutdown(wait=True)

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Turn every ``poll_interval_s`` until ``stop`` is set (a turn in progress ends)."""
        log.info(
            "scheduler.started",
            owner=self.owner,
            poll_interval_s=self.settings.poll_interval_s,
            lease_s=self.settings.lease_s,
            tick_sources=len(self.tick_sources),
        )
        while not stop.is_set():
            started = time.monotonic()
            self.turn()
            stop.wait(max(0.0, self.settings.poll_interval_s - (time.monotonic() - started)))
        log.info("scheduler.stopped", owner=self.owner)

    def healthy(self) -> tuple[bool, dict[str, object]]:
        """Alive while turns complete: the last one ended less than a minute (or ten
        poll intervals) ago."""
        age_s = time.monotonic() - self.last_turn
        limit_s = max(60.0, 10 * self.settings.poll_interval_s)
        return age_s < limit_s, {"last_turn_age_s": round(age_s, 3), "owner": self.owner}

    def turn(self) -> TurnResult:
        """One turn: publish what is due, then run the tick sources. Never raises."""
        now = self.clock()
        result = TurnResult()
        try:
            self._publish_due(now, result)
        except TimerStoreError as exc:
            log.warning("scheduler.timers_unavailable", error=str(exc))
        except Exception:  # never fatal: the next turn tries again
            log.exception("scheduler.turn_failed")
        for source in self.tick_sources:
            try:
                result.fired += source(self.clock())
            except Exception:
                metrics.TICK_ERRORS.inc()
                log.exception("scheduler.tick_source_failed", source=repr(source))
        metrics.TURNS.inc()
        self.last_turn = time.monotonic()
        return result

    # -- one turn's steps --------------------------------------------------------------

    def _current_watermark(self, now: datetime) -> int:
        mono = time.monotonic()
        if self._watermark is None or mono - self._watermark_read > WATERMARK_REFRESH_S:
            stored = self.store.watermark(now)
            self._watermark = stored
            self._watermark_read = mono
        return self._watermark

    def due(self, now: datetime) -> list[DueRef]:
        """Due timers, oldest bucket first, at most ``max_jobs_per_turn``; moves the
        watermark past old buckets that are empty."""
        limit = self.settings.max_jobs_per_turn
        low = self._current_watermark(now)
        current = bucket_of(now)
        # A bucket is left behind once it ended WATERMARK_GRACE_S ago and nothing is in it.
        leave_before = bucket_of(now - timedelta(seconds=WATERMARK_GRACE_S + BUCKET_S))
        refs: list[DueRef] = []
        empty_until = low  # the first bucket not known to be empty
        contiguous = True
        for bucket in range(low, current + 1, BUCKET_S):
            found = 0
            complete = True
            for shard in self._shards:
                if len(refs) >= limit:
                    complete = False
                    break
                batch = self.store.due_in(partition(bucket, shard), now, limit=limit - len(refs))
                found += len(batch)
                refs += batch
            if contiguous and complete and found == 0 and bucket <= leave_before:
                empty_until = bucket + BUCKET_S
            else:
                contiguous = False
            if len(refs) >= limit:
                break
        if empty_until > low and self.store.advance_watermark(low, empty_until):
            self._watermark = empty_until
        elif empty_until > low:
            self._watermark = None  # another replica moved it: read it again
        return refs

    def _claim(self, ref: DueRef) -> Timer | None:
        return self.store.claim(ref.job_id, self.owner, self.clock(), self.settings.lease_s)

    def _publish_due(self, now: datetime, result: TurnResult) -> None:
        started = time.monotonic()
        refs = self.due(now)
        result.list_s = time.monotonic() - started
        result.due = len(refs)
        metrics.DUE_BACKLOG.set(len(refs))
        mono = time.monotonic()
        if mono < self._pause_until or not refs:
            return
        self._skip = {k: v for k, v in self._skip.items() if v > mono}
        by_partition: dict[str, list[DueRef]] = {}
        for ref in refs:
            if ref.job_id not in self._skip:
                by_partition.setdefault(ref.partition, []).append(ref)
        claimed_at = time.monotonic()
        timers: list[Timer] = []
        step = self.settings.claim_threads
        for part_refs in by_partition.values():
            for start in range(0, len(part_refs), step):
                chunk = part_refs[start : start + step]
                claims = list(self._pool.map(self._claim, chunk))
                lost = [ref for ref, timer in zip(chunk, claims, strict=True) if timer is None]
                timers += [timer for timer in claims if timer is not None]
                for ref in lost:
                    self._skip[ref.job_id] = time.monotonic() + self.settings.lease_s
                result.lost += len(lost)
                if lost:
                    break  # another replica works on this partition: leave it the rest
        metrics.CLAIMS_LOST.inc(result.lost)
        result.claimed = len(timers)
        result.claim_s = time.monotonic() - claimed_at
        if not timers:
            return
        if time.monotonic() - claimed_at > self.settings.lease_s - self._margin_s:
            # Claims took so long that another replica may take these jobs before our
            # publish ends: give them back rather than publish twice.
            log.warning("scheduler.claims_too_slow", jobs=len(timers))
            for timer in timers:
                self.store.release(timer.job_id, self.owner)
            return
        self._publish(timers, result)
        log.info(
            "scheduler.turn",
            due=result.due,
            claimed=result.claimed,
            lost=result.lost,
            published=result.published,
            failed=result.failed,
            list_s=round(result.list_s, 3),
            claim_s=round(result.claim_s, 3),
            publish_s=round(result.publish_s, 3),
            delete_s=round(result.delete_s, 3),
        )

    def _publish(self, timers: list[Timer], result: TurnResult) -> None:
        started = time.monotonic()
        outcomes = self.publisher.publish_timers(timers)
        result.publish_s = time.monotonic() - started
        done_at = self.clock()
        published: list[str] = []
        failed: list[Timer] = []
        for timer, outcome in zip(timers, outcomes, strict=True):
            if isinstance(outcome, Published):
                published.append(timer.job_id)
                lateness_s = (done_at - timer.due_at).total_seconds()
                metrics.LATENESS_SECONDS.observe(max(0.0, lateness_s))
                log.info(
                    "job published",
                    job_id=timer.job_id,
                    job_type=timer.job_type,
                    due_at=timer.due_at.isoformat(),
                    lateness_s=round(lateness_s, 3),
                )
            else:
                failed.append(timer)
                log.warning(
                    "job not published",
                    job_id=timer.job_id,
                    job_type=timer.job_type,
                    reason=outcome.detail,
                )
        result.published = len(published)
        result.failed = len(failed)
        metrics.PUBLISHED.inc(len(published))
        metrics.PUBLISH_FAILURES.inc(len(failed))
        if published:
            # A failed delete leaves the timer to be published again after its lease:
            # the same job id, which the idempotency guard collapses.
            started = time.monotonic()
            error = self.store.complete(published)
            result.delete_s = time.monotonic() - started
            if error is not None:
                log.warning("scheduler.delete_failed", jobs=len(published), error=str(error))
        for timer in failed:
            self.store.release(timer.job_id, self.owner)
        if failed:
            self._pause_until = time.monotonic() + self._pause_s
            log.warning("scheduler.publishing_paused", pause_s=self._pause_s, failed=len(failed))
            self._pause_s = min(PAUSE_MAX_S, self._pause_s * 2)
        else:
            self._pause_s = PAUSE_BASE_S
