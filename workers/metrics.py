"""Prometheus metrics of a worker node.

Jobs run in pool processes, so the counters live in prometheus_client's
multiprocess mode: every process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` and the node's ``/metrics`` adds them up. The node
sets that directory before anything creates a metric; the instruments are built
lazily for the same reason (prometheus_client picks its storage at import).
"""

from __future__ import annotations

import functools
import glob
import os
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

from infra.settings import prometheus_multiproc_dir, set_environment

ENV = "PROMETHEUS_MULTIPROC_DIR"
_DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_LAG_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def prepare_multiprocess_dir() -> str:
    """Point prometheus_client at a fresh directory (before any metric exists).

    prometheus_client is imported here, in the node, before any pool process is
    forked: a child forked while another thread (the first ``/metrics`` scrape)
    was importing it would inherit the import's lock and hang on its first job.
    Recycled children are forked at any time, so the import must not be lazy here.
    """
    path = prometheus_multiproc_dir()
    if not path:
        path = tempfile.mkdtemp(prefix="conveyor-metrics-")
        set_environment({ENV: path})
    import prometheus_client.multiprocess  # noqa: F401, PLC0415 - picks the storage set above

    return path


#: The counts of processes that exited are added up in ``<type>_exited.db``.
EXITED = "exited"
_fold_lock = threading.Lock()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process now: not ours to fold yet
    return True


def fold_exited_processes(directory: str) -> int:
    """Add the counters and histograms of exited processes into one file per type.

    Every pool process writes ``counter_<pid>.db`` and ``histogram_<pid>.db``; a node
    that recycles its children would otherwise read one more pair per recycled child
    at every scrape, for ever. Counters and histogram buckets are sums, so folding
    them keeps every total. Returns how many files were folded (and deleted).
    """
    from prometheus_client import mmap_dict  # noqa: PLC0415 - see the module doc

    mmaped: Any = mmap_dict.MmapedDict  # untyped: the storage of multiprocess mode

    folded = 0
    with _fold_lock:  # two scrapes at once must not add a file twice
        for path in sorted(glob.glob(os.path.join(directory, "*.db"))):
            kind, _, rest = os.path.basename(path).partition("_")
            pid = rest.removesuffix(".db")
            if kind not in ("counter", "histogram") or not pid.isdigit() or _alive(int(pid)):
                continue
            total = mmaped(os.path.join(directory, f"{kind}_{EXITED}.db"))
            try:
                for key, value, timestamp, _ in mmaped.read_all_values_from_file(path):
                    before, _ = total.read_value(key)
                    total.write_value(key, before + value, timestamp)
            finally:
                total.close()
            os.remove(path)
            folded += 1
    return folded


@dataclass(frozen=True)
class _Instruments:
    started: Any
    succeeded: Any
    failed: Any
    retried: Any
    dead_lettered: Any
    cancelled: Any
    duration: Any
    lag: Any


#: functools.cache does not hold concurrent first callers back: two threads of a
#: ``threads`` pool starting their first jobs at once would both register the metrics
#: (prometheus_client's DuplicateTimeseries fails both jobs).
_INSTRUMENTS_LOCK = threading.Lock()


def instruments() -> _Instruments:
    """The job metrics, created on first use in each process (thread-safe)."""
    with _INSTRUMENTS_LOCK:
        return _instruments()


@functools.cache
def _instruments() -> _Instruments:
    from prometheus_client import Counter, Histogram  # noqa: PLC0415 - see the module doc

    labels = ("job_type", "queue")
    return _Instruments(
        started=Counter("conveyor_jobs_started", "Job attempts started.", labels),
        succeeded=Counter("conveyor_jobs_succeeded", "Job attempts that succeeded.", labels),
        failed=Counter("conveyor_jobs_failed", "Job attempts that failed.", labels),
        retried=Counter("conveyor_jobs_retried", "Failed attempts scheduled for a retry.", labels),
        dead_lettered=Counter(
            "conveyor_jobs_dead_lettered", "Jobs sent to a dead-letter queue.", (*labels, "reason")
        ),
        cancelled=Counter(
            "conveyor_jobs_cancelled",
            "Deliveries of cancelled jobs, deleted without running the handler.",
            labels,
        ),
        duration=Histogram(
            "conveyor_job_duration_seconds",
            "Handler run time.",
            labels,
            buckets=_DURATION_BUCKETS_S,
        ),
        lag=Histogram(
            "conveyor_job_queue_lag_seconds",
            "Time from SQS accepting the message to the job starting.",
            ("queue",),
            buckets=_LAG_BUCKETS_S,
        ),
    )


def render(extra: dict[str, float]) -> tuple[bytes, str]:
    """The node's metrics page: every process's job metrics plus the node's own gauges."""
    from prometheus_client import (  # noqa: PLC0415 - see the module doc
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )
    from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415

    class _NodeGauges:
        # Read at scrape time from the node process; not stored in multiprocess files.
        def collect(self) -> list[GaugeMetricFamily]:
            return [
                GaugeMetricFamily(name, name.replace("_", " "), value=value)
                for name, value in extra.items()
            ]

    registry = CollectorRegistry()
    directory = prometheus_multiproc_dir()
    if directory:
        fold_exited_processes(directory)
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_NodeGauges())
    return generate_latest(registry), CONTENT_TYPE_LATEST
