"""Recycling: a fresh job process after N jobs or past a memory ceiling (a pool's settings).

A safety net against memory that grows with every job (a handler's cache, a
library's leak): ``max_jobs_per_child`` and ``max_memory_per_child_mb`` in
queues.yaml. Recycling happens between jobs only and never loses or repeats one.

* ``prefork``: each pool child is recycled by Celery/billiard itself
  (``worker_max_tasks_per_child``, ``worker_max_memory_per_child``): after the job
  that reached a limit the child reports its result, exits, and the pool forks a
  replacement; the node goes on consuming.
* ``threads`` and ``solo`` (and any pool whose jobs run in the node process, such
  as an asyncio loop): there is no child to replace, so the node itself is
  recycled. :class:`NodeRecycler` counts the jobs the node finished and checks its
  resident memory after each; once a limit is passed it asks the node to stop the
  way SIGTERM does (no new jobs; jobs in hand finish within the grace period;
  messages received but not started are made visible at once; pending deletes are
  flushed), and the node exits with :data:`infra.errors.EXIT_RECYCLED` for its
  supervisor (``conveyor workers up``, ECS, Kubernetes) to start a fresh one.
  A pool kind only has to call :meth:`NodeRecycler.job_finished` after each job.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.logs import get_logger
from infra.topology.model import Pool

log = get_logger("conveyor.worker")

MIB = 1024 * 1024


def current_rss_bytes() -> int:
    """This process's resident memory now (Linux), else its peak (``ru_maxrss``)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, else KiB


@dataclass(frozen=True)
class RecyclePolicy:
    """When a job process is replaced: after ``max_jobs`` jobs, or past ``max_rss_bytes``."""

    max_jobs: int | None = None
    max_rss_bytes: int | None = None

    @classmethod
    def of(cls, pool: Pool) -> RecyclePolicy:
        """The policy a pool of queues.yaml declares."""
        limit_mb = pool.max_memory_per_child_mb
        return cls(pool.max_jobs_per_child, limit_mb * MIB if limit_mb is not None else None)

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return self.max_jobs is not None or self.max_rss_bytes is not None

    def celery_settings(self) -> dict[str, Any]:
        """The prefork pool's Celery settings (Celery counts memory in KiB)."""
        return {
            "worker_max_tasks_per_child": self.max_jobs,
            "worker_max_memory_per_child": (
                self.max_rss_bytes // 1024 if self.max_rss_bytes is not None else None
            ),
        }

    def reason(self, jobs: int, rss_bytes: Callable[[], int]) -> str | None:
        """Why a process that finished ``jobs`` jobs is due for recycling, or None."""
        if self.max_jobs is not None and jobs >= self.max_jobs:
            return f"{jobs} jobs (max_jobs_per_child {self.max_jobs})"
        if self.max_rss_bytes is not None:
            rss = rss_bytes()
            if rss > self.max_rss_bytes:
                return (
                    f"{rss // MIB} MiB resident"
                    f" (max_memory_per_child_mb {self.max_rss_bytes // MIB})"
                )
        return None


class NodeRecycler:
    """Decides when a node whose jobs run in its own process is recycled (threads, solo).

    ``recycle(reason)`` is called once, from the thread that finished the job that
    passed a limit; it must start the node's graceful stop.
    """

    def __init__(
        self,
        policy: RecyclePolicy,
        recycle: Callable[[str], None],
        *,
        rss_bytes: Callable[[], int] = current_rss_bytes,
    ) -> None:
        self.policy = policy
        self._recycle = recycle
        self._rss_bytes = rss_bytes
        self._lock = threading.Lock()
        self.jobs = 0
        #: Why the node is being recycled, once it is.
        self.reason: str | None = None

    def job_finished(self, **_: Any) -> None:
        """Count a finished job; start recycling the node when it passed a limit."""
        with self._lock:
            self.jobs += 1
            if self.reason is not None:
                return  # already draining: the jobs still in hand finish
            reason = self.policy.reason(self.jobs, self._rss_bytes)
            if reason is None:
                return
            self.reason = reason
        log.info("worker.recycling", reason=reason, jobs=self.jobs)
        self._recycle(reason)
