"""Hooks around every job: cross-cutting work kept out of handlers and out of the runner.

A hook is ``hook(job, proceed) -> Outcome``: it may act before and after calling
``proceed()`` (the rest of the chain, then the handler), or answer without calling
it (the idempotency guard). The runner wraps each delivery in its hooks, in order:
the first listed is the outermost.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from celery.signals import worker_process_shutdown

from infra import tracing
from infra.ledger import Ledger, RunState, RunUpdate, latest_of
from workers.metrics import instruments
from workers.outcome import Outcome

log = structlog.stdlib.get_logger("conveyor.worker")


@dataclass(frozen=True)
class Job:
    """What hooks know of a delivery. Ids are None when the body was not a valid envelope."""

    queue: str
    attempt: int
    job_id: str | None
    job_type: str | None
    trace_id: str | None
    #: When SQS accepted the message (SentTimestamp), epoch seconds.
    sent_at_s: float | None
    #: How often the job was redriven from its DLQ (the envelope's redrive count).
    redrives: int = 0
    #: The envelope's W3C ``traceparent`` (the publish span, when the API traces).
    traceparent: str | None = None


Proceed = Callable[[], Outcome]
Hook = Callable[[Job, Proceed], Outcome]


def _not_before_sent(job: Job) -> datetime:
    """Now, but never before SQS accepted the message: a worker whose clock lags AWS's
    would otherwise record a job as running (or finished) before it was queued."""
    now = datetime.now(UTC)
    if job.sent_at_s is None:
        return now
    return max(now, datetime.fromtimestamp(job.sent_at_s, UTC))


def log_context(job: Job, proceed: Proceed) -> Outcome:
    """Bind job id, type, queue, attempt and trace id to every log event of the job."""
    with structlog.contextvars.bound_contextvars(
        job_id=job.job_id,
        job_type=job.job_type,
        queue=job.queue,
        attempt=job.attempt,
        trace_id=job.trace_id,
    ):
        return proceed()


def _flush_traces(**_: object) -> None:
    # billiard ends a child with os._exit: export its queued spans first.
    tracing.flush()


def trace_attempt(job: Job, proceed: Proceed) -> Outcome:
    """One consumer span per attempt, child of the envelope's ``traceparent``, with its outcome.

    Listed by :func:`workers.idempotency.job_hooks` only when tracing is on (outermost).
    """
    with tracing.attempt_span(
        queue=job.queue,
        attempt=job.attempt,
        job_id=job.job_id,
        job_type=job.job_type,
        traceparent=job.traceparent,
        redrives=job.redrives,
    ) as span:
        outcome = proceed()
        reason: str | None = None
        if outcome.kind == "dead_letter":
            reason = outcome.failure.reason if outcome.failure else "unknown"
        elif outcome.kind == "retry":
            reason = outcome.error_type
        kind = "cancelled" if outcome.extra.get("cancelled") else outcome.kind
        span.set(conveyor__outcome=kind, conveyor__reason=reason)
        if outcome.kind != "succeeded":
            span.fail(f"{kind}: {outcome.error or reason}")
        return outcome


def connect_trace_flush() -> None:
    """Flush spans when a pool child shuts down (idempotent)."""
    worker_process_shutdown.connect(_flush_traces, weak=False, dispatch_uid="conveyor.traces")


def record_metrics(job: Job, proceed: Proceed) -> Outcome:
    """Count attempts and outcomes, time the handler, measure queue lag at start."""
    m = instruments()
    job_type = job.job_type or "unknown"
    if job.sent_at_s is not None:
        m.lag.labels(job.queue).observe(max(0.0, time.time() - job.sent_at_s))
    m.started.labels(job_type, job.queue).inc()
    started = time.perf_counter()
    outcome = proceed()
    if outcome.extra.get("cancelled"):  # deleted unrun: no handler time, not a success
        m.cancelled.labels(job_type, job.queue).inc()
        return outcome
    m.duration.labels(job_type, job.queue).observe(time.perf_counter() - started)
    if outcome.kind == "succeeded":
        m.succeeded.labels(job_type, job.queue).inc()
        return outcome
    m.failed.labels(job_type, job.queue).inc()
    if outcome.kind == "retry":
        m.retried.labels(job_type, job.queue).inc()
    else:
        reason = outcome.failure.reason if outcome.failure else "unknown"
        m.dead_lettered.labels(job_type, job.queue, reason).inc()
    return outcome


class SuccessStore(Protocol):
    """Remembers which (queue, job id) succeeded."""

    def succeeded(self, queue: str, job_id: str) -> bool:
        """Whether the job already succeeded on ``queue``."""
        ...

    def mark_succeeded(self, queue: str, job_id: str) -> None:
        """Record a success (best effort: a failure to record is logged, not raised)."""
        ...


class IdempotencyGuard:
    """Skip a job whose id already succeeded on this queue (for the listed job types).

    Deliveries are at least once; handlers should be idempotent anyway. The guard
    saves the work of a redelivery or a redrive duplicate after a success was
    recorded. Two deliveries running at the same moment can both run: it is a
    check before and a record after, not a lock.
    """

    def __init__(self, store: SuccessStore, job_types: Collection[str]) -> None:
        self.store = store
        self.job_types = frozenset(job_types)

    def __call__(self, job: Job, proceed: Proceed) -> Outcome:
        """Run the job unless it already succeeded here; record its success."""
        if job.job_id is None or job.job_type not in self.job_types:
            return proceed()
        if self.store.succeeded(job.queue, job.job_id):
            log.info("job.skipped_duplicate")
            return Outcome(
                "succeeded",
                job.queue,
                job.attempt,
                job.job_id,
                job.job_type,
                trace_id=job.trace_id,
                extra={"skipped": True},
            )
        outcome = proceed()
        if outcome.kind == "succeeded":
            self.store.mark_succeeded(job.queue, job.job_id)
        return outcome


#: Ledger updates waiting for the writer threads; beyond this they are dropped (and
#: logged): a ledger that cannot keep up must not grow a worker's memory without bound.
LEDGER_QUEUE_MAX = 10_000
#: Writer threads per process. A job's updates always go to the same one (in order);
#: several let a process's writes wait on DynamoDB side by side.
LEDGER_WRITERS = 4
#: Once a writer has this many updates waiting, a job's waiting update is replaced
#: by its newer one instead of queueing both (``running`` then ``succeeded`` becomes
#: one write of ``succeeded`` that keeps the start time): behind, a writer needs one
#: write per job instead of falling further behind with two.
LEDGER_COALESCE_AFTER = 16
#: At exit, pending ledger updates get this long to be written.
LEDGER_FLUSH_AT_EXIT_S = 2.0
#: Dropped updates are counted and logged at most this often.
LEDGER_DROP_LOG_INTERVAL_S = 60.0

_Key = tuple[str, str]


class _Shard:
    """One writer thread's updates, oldest job first; a job's own updates in order."""

    def __init__(self, mutex: threading.Lock) -> None:
        self.jobs: dict[_Key, list[RunUpdate]] = {}
        self.pending = 0
        #: Signalled when an update is added (the writer's lock is shared by all shards).
        self.ready = threading.Condition(mutex)


class BackgroundWriter:
    """Runs ledger writes off the job's path, on :data:`LEDGER_WRITERS` threads per process.

    A job's updates (by queue and job id) always go to the same thread, in order;
    when that thread is behind, a job's update still waiting is replaced by its
    newer one (:func:`infra.ledger.latest_of`), so the backlog, and the memory it
    holds, stops growing as soon as the writers manage one write per job. The
    threads start on first use in each process (a Celery prefork child builds its
    own; a thread does not survive ``fork()``). Pending writes are flushed for up
    to :data:`LEDGER_FLUSH_AT_EXIT_S` when a pool child stops (Celery's
    ``worker_process_shutdown``: billiard ends its children with ``os._exit``, which
    skips ``atexit``) and at interpreter exit (threads and solo pools).
    """

    def __init__(
        self, write: Callable[[RunUpdate], object], *, writers: int = LEDGER_WRITERS
    ) -> None:
        self._write = write
        self._writers = writers
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._mutex = threading.Lock()
        #: Signalled when nothing is waiting or being written (flush waits on it).
        self._idle = threading.Condition(self._mutex)
        self._shards: list[_Shard] = []
        self._pending = 0
        self._busy = 0
        self._dropped = 0
        self._dropped_logged_at = 0.0
        worker_process_shutdown.connect(self._flush_on_shutdown, weak=False)
        atexit.register(self.flush, LEDGER_FLUSH_AT_EXIT_S)

    def _flush_on_shutdown(self, **_: object) -> None:
        self.flush(LEDGER_FLUSH_AT_EXIT_S)

    def submit(self, update: RunUpdate) -> None:
        """Queue ``update`` for writing (dropped with a warning if the queue is full)."""
        self._ensure_threads()
        key = (update.queue, update.job_id)
        with self._mutex:
            shard = self._shards[hash(key) % self._writers]
            waiting = shard.jobs.get(key)
            if waiting and shard.pending >= LEDGER_COALESCE_AFTER:
                waiting[-1] = latest_of(waiting[-1], update)
                return
            if self._pending >= LEDGER_QUEUE_MAX:
                self._drop()
                return
            shard.jobs.setdefault(key, []).append(update)
            shard.pending += 1
            self._pending += 1
            shard.ready.notify()

    def _drop(self) -> None:
        # A ledger that is down for long drops every update: one warning a minute.
        self._dropped += 1
        now = time.monotonic()
        if now - self._dropped_logged_at >= LEDGER_DROP_LOG_INTERVAL_S:
            log.warning(
                "ledger.updates_dropped",
                dropped=self._dropped,
                consequence="the jobs go on; their status lags",
            )
            self._dropped, self._dropped_logged_at = 0, now

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued update was written (or ``timeout_s``); True if drained."""
        if self._pid != os.getpid():
            return True  # nothing was submitted in this process
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending or self._busy:
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    return False
                self._idle.wait(left_s)
        return True

    def _ensure_threads(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            # After fork the parent's updates belong to its threads: start clean.
            self._mutex = threading.Lock()
            self._idle = threading.Condition(self._mutex)
            self._shards = [_Shard(self._mutex) for _ in range(self._writers)]
            self._pending = self._busy = 0
            for i, shard in enumerate(self._shards):
                threading.Thread(
                    target=self._run, args=(shard,), name=f"conveyor-ledger-{i}", daemon=True
                ).start()
            self._pid = pid

    def _next(self, shard: _Shard) -> RunUpdate:
        with shard.ready:
            while not shard.pending:
                shard.ready.wait()
            key, updates = next(iter(shard.jobs.items()))
            update = updates.pop(0)
            if not updates:
                del shard.jobs[key]
            shard.pending -= 1
            self._pending -= 1
            self._busy += 1
            return update

    def _run(self, shard: _Shard) -> None:
        while True:
            update = self._next(shard)
            try:
                self._write(update)
            except Exception:  # the writer thread must outlive any one write
                log.exception("ledger.write_crashed", state=update.state)
            finally:
                with self._idle:
                    self._busy -= 1
                    if not self._pending and not self._busy:
                        self._idle.notify_all()


class Inline:
    """Writes ledger updates at once, on the job's thread (AWS Lambda, unit tests).

    Lambda freezes the process between invocations, so a background thread's
    writes could wait for the next one, or be lost with the environment.
    """

    def __init__(self, write: Callable[[RunUpdate], object]) -> None:
        self._write = write

    def submit(self, update: RunUpdate) -> None:
        """Write ``update`` now."""
        self._write(update)

    def flush(self, timeout_s: float) -> bool:
        """Nothing is ever pending."""
        return True


class Submitter(Protocol):
    """Takes ledger updates: :class:`BackgroundWriter` or :class:`Inline`."""

    def submit(self, update: RunUpdate) -> None:
        """Record ``update`` (eventually); never raises."""
        ...

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything submitted was written."""
        ...


#: After a ``running`` write failed (the ledger is down), the hook stops writing it on
#: the job's path for this long: an outage slows one job per process per pause, not
#: every job (see :class:`LedgerHook`).
CANCEL_CHECK_PAUSE_S = 30.0


class LedgerHook:
    """Records each delivery in the job ledger: ``running`` before, the outcome after.

    Only job types with ``ledger: true``. The outcome is the one the runner decided
    (retry with its delay → ``retrying`` with the next attempt time; dead-letter →
    ``dead-lettered`` with the failure's reason). Ledger failures are logged by the
    ledger and never change the outcome.

    ``check_cancelled``: the ``running`` write is made on the job's path, before the
    handler (:meth:`~infra.ledger.Ledger.record_start`); a job cancelled on this
    queue is then not run: the hook answers ``succeeded`` with ``extra={"cancelled":
    True}``, so the message is deleted (log ``job.cancelled``, counter
    ``conveyor_jobs_cancelled``). It costs no extra request, only the write's round
    trip before the handler. The check fails open: when the write fails the job runs,
    and for :data:`CANCEL_CHECK_PAUSE_S` the process writes ``running`` in the
    background again, so a ledger outage costs one job per process one timeout.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        submitter: Submitter | None = None,
        check_cancelled: bool = False,
    ) -> None:
        self.ledger = ledger
        self.submitter: Submitter = submitter or BackgroundWriter(ledger.record_run)
        self.check_cancelled = check_cancelled
        #: ``time.monotonic()`` until which ``running`` goes to the submitter (after a failure).
        self._unchecked_until = 0.0

    def _update(
        self,
        job: Job,
        state: RunState,
        *,
        next_attempt_at: datetime | None = None,
        reason: str | None = None,
        error: str | None = None,
    ) -> RunUpdate:
        assert job.job_id is not None
        assert job.job_type is not None
        return RunUpdate(
            queue=job.queue,
            job_id=job.job_id,
            job_type=job.job_type,
            state=state,
            attempt=job.attempt,
            redrives=job.redrives,
            trace_id=job.trace_id,
            next_attempt_at=next_attempt_at,
            reason=reason,
            error=error,
            at=_not_before_sent(job),
        )

    def __call__(self, job: Job, proceed: Proceed) -> Outcome:
        """Record ``running``, run the job, record what the runner decided."""
        if job.job_id is None or not self.ledger.records(job.job_type):
            return proceed()
        running = self._update(job, "running")
        if self.check_cancelled and time.monotonic() >= self._unchecked_until:
            verdict = self.ledger.record_start(running)
            if verdict == "cancelled":
                log.info("job.cancelled")
                return Outcome(
                    "succeeded",
                    job.queue,
                    job.attempt,
                    job.job_id,
                    job.job_type,
                    trace_id=job.trace_id,
                    extra={"cancelled": True},
                )
            if verdict == "failed":  # fail open: run it; skip the check for a while
                self._unchecked_until = time.monotonic() + CANCEL_CHECK_PAUSE_S
        else:
            self.submitter.submit(running)
        outcome = proceed()
        if outcome.kind == "succeeded":
            update = self._update(job, "succeeded")
        elif outcome.kind == "retry":
            error = f"{outcome.error_type}: {outcome.error}" if outcome.error_type else None
            update = self._update(
                job,
                "retrying",
                next_attempt_at=datetime.now(UTC) + timedelta(seconds=outcome.delay_s),
                error=error,
            )
        else:
            failure = outcome.failure
            update = self._update(
                job,
                "dead-lettered",
                reason=failure.reason if failure else "unknown",
                error=f"{failure.error_type}: {failure.error_message}" if failure else None,
            )
        self.submitter.submit(update)
        return outcome


#: The hooks every worker runs, outermost first (the guard, if any, goes innermost).
DEFAULT_HOOKS: tuple[Hook, ...] = (log_context, record_metrics)
