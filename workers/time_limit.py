"""``max_runtime_s`` in the pools whose jobs run in the node's own process (threads, solo, asyncio).

A prefork pool enforces a job type's ``max_runtime_s`` with Celery's time limits
(:mod:`workers.app`): the soft limit raises inside the handler, the hard limit
kills the child. The other pools run jobs in the node process, where:

* ``asyncio``: the job's task is cancelled at the limit (:mod:`workers.aio.bridge`):
  :class:`~celery.exceptions.SoftTimeLimitExceeded`, a failed attempt as on prefork.
* ``solo``: the job runs in the node's main thread, so the limit is a timer signal
  (:func:`alarm_limit`) that raises :class:`~celery.exceptions.SoftTimeLimitExceeded`
  in the handler, exactly like prefork's soft limit.
* ``threads``: Python cannot stop a thread from outside. The stop is cooperative:
  ``ctx.time_left_s()`` tells a handler how long it has left, and it stops (raises)
  by itself, a failed attempt like any other.

In all three, a job that is still running :data:`HARD_LIMIT_GRACE_S` after its
limit (a thread that ignored its deadline, a coroutine that blocks the loop or
swallows its cancellation, a C call the timer signal cannot interrupt) is what
prefork's hard limit is for: :class:`OverrunWatch` recycles the node — it drains
as on SIGTERM (the other jobs finish) and exits with ``EXIT_RECYCLED`` for its
supervisor to start a fresh one, at the latest ``exit_after_s`` later. The
overrunning job's message is no longer kept invisible past the limit (the
heartbeat stops), so it comes back with its attempt spent, as after a hard kill.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from infra.errors import EXIT_RECYCLED
from infra.logs import get_logger
from infra.topology import Topology

log = get_logger("conveyor.worker")

#: Between the limit and the hard stop: room for the handler to clean up (prefork's too).
HARD_LIMIT_GRACE_S = 5.0
#: How often the watch looks for overrunning jobs.
CHECK_INTERVAL_S = 1.0


def runtime_limits(topology: Topology, queues: Iterable[str]) -> dict[str, float]:
    """Job type -> ``max_runtime_s``, for the job types of ``queues`` that set one."""
    return {
        job_type: runtime_s
        for queue in queues
        for job_type in topology.job_types_of_queue(queue)
        if job_type in topology.job_types
        and (runtime_s := topology.job_types[job_type].max_runtime_s) is not None
    }


@contextmanager
def alarm_limit(runtime_s: float) -> Iterator[None]:
    """Raise SoftTimeLimitExceeded in the block after ``runtime_s`` (main thread only).

    The solo pool's limit (its jobs run in the main thread, where Python delivers
    signals). Elsewhere it does nothing: a signal cannot interrupt another thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise SoftTimeLimitExceeded(f"max_runtime_s ({runtime_s:g} s) exceeded")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, runtime_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class OverrunWatch:
    """Recycles the node once a job runs :data:`HARD_LIMIT_GRACE_S` past its ``max_runtime_s``.

    ``job_started``/``job_finished`` are Celery's ``task_prerun``/``task_postrun``
    receivers (they fire in the process that runs the job: the node, for these
    pools). ``recycle(reason)`` must start the node's graceful stop; if the node is
    still alive ``exit_after_s`` later (a thread that never returns keeps it from
    exiting), the watch ends the process with ``EXIT_RECYCLED``.
    """

    def __init__(
        self,
        limits: Mapping[str, float],
        recycle: Callable[[str], None],
        *,
        exit_after_s: float,
        grace_s: float = HARD_LIMIT_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
        hard_exit: Callable[[int], object] = os._exit,
    ) -> None:
        self.limits = dict(limits)
        self.grace_s = grace_s
        self.exit_after_s = exit_after_s
        self._recycle = recycle
        self._clock = clock
        self._hard_exit = hard_exit
        self._lock = threading.Lock()
        #: Task id -> (job type, when it is overdue).
        self._running: dict[str, tuple[str, float]] = {}
        #: Why the node is being recycled, once a job overran.
        self.reason: str | None = None

    def job_started(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        """A job started: note when it is overdue (job types without a limit are ignored)."""
        job_type = getattr(task, "name", None)
        limit_s = self.limits.get(job_type) if isinstance(job_type, str) else None
        if task_id is None or limit_s is None:
            return
        with self._lock:
            self._running[task_id] = (str(job_type), self._clock() + limit_s + self.grace_s)

    def job_finished(self, task_id: str | None = None, **_: Any) -> None:
        """A job ended (however): it is no longer watched."""
        if task_id is not None:
            with self._lock:
                self._running.pop(task_id, None)

    def check(self) -> str | None:
        """Recycle the node if a job is overdue; why, if it was (now or before)."""
        now = self._clock()
        with self._lock:
            if self.reason is not None:
                return self.reason
            overdue = [(tid, jt) for tid, (jt, at) in self._running.items() if now >= at]
            if not overdue:
                return None
            task_id, job_type = overdue[0]
            limit_s = self.limits[job_type]
            self.reason = f"job {task_id} ({job_type}) overran max_runtime_s {limit_s:g}"
        log.error(
            "job.overran",
            job_id=task_id,
            job_type=job_type,
            max_runtime_s=limit_s,
            grace_s=self.grace_s,
            consequence="the node is recycled; the job's message comes back, its attempt spent",
        )
        self._recycle(self.reason)
        timer = threading.Timer(self.exit_after_s, self._exit)
        timer.daemon = True
        timer.start()
        return self.reason

    def _exit(self) -> None:
        log.error("worker.overrun_exit", reason=self.reason, exit_code=EXIT_RECYCLED)
        self._hard_exit(EXIT_RECYCLED)

    def start(self) -> None:
        """Check every :data:`CHECK_INTERVAL_S` in a daemon thread."""

        def run() -> None:
            while self.check() is None:
                time.sleep(CHECK_INTERVAL_S)  # a periodic check, not synchronisation

        threading.Thread(target=run, name="conveyor-overrun-watch", daemon=True).start()
