"""The workload every system runs, and how a handler reports that it ran.

A job carries ``enqueued_at`` (wall clock, set by the producer just before the
enqueue request), ``cpu_ms`` (0 for a no-op, ~5 for the CPU workload) and ``io_ms``
(100 for the I/O workload: a wait, as an HTTP call would make). Each handler burns
that much CPU time, waits ``io_ms`` (``time.sleep``; ``asyncio.sleep`` in the
``async def`` handler the asyncio pool runs) and appends one fixed-size record to a file of
its own process under ``$BENCH_RECORDS_DIR``: the driver counts finished jobs from
file sizes alone (no extra AWS requests, no IPC) and reads the latencies at the end.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from workers.api import JobContext

RECORDS_ENV = "BENCH_RECORDS_DIR"
#: "<enqueued_at> <started_at>\n", both wall-clock seconds, padded to this many bytes.
RECORD_BYTES = 40
JOB_TYPE = "bench.work"


class Work(BaseModel):
    """A benchmark job's payload."""

    enqueued_at: float
    cpu_ms: float = 0.0
    io_ms: float = 0.0


_record_fd: dict[int, int] = {}


def _fd() -> int:
    pid = os.getpid()  # one file per process: prefork children open their own
    fd = _record_fd.get(pid)
    if fd is None:
        path = Path(os.environ[RECORDS_ENV]) / f"{pid}.rec"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _record_fd[pid] = fd
    return fd


def _start(enqueued_at: float, cpu_ms: float) -> None:
    """Record the start, then burn ``cpu_ms`` of this process's CPU time."""
    started_at = time.time()
    line = f"{enqueued_at:.6f} {started_at:.6f}".ljust(RECORD_BYTES - 1) + "\n"
    os.write(_fd(), line.encode())
    if cpu_ms > 0:
        until = time.process_time() + cpu_ms / 1000.0
        while time.process_time() < until:
            pass


def run(enqueued_at: float, cpu_ms: float, io_ms: float = 0.0) -> None:
    """The job itself: record the start, burn ``cpu_ms`` of CPU, then block ``io_ms``."""
    _start(enqueued_at, cpu_ms)
    if io_ms > 0:
        time.sleep(io_ms / 1000.0)  # the job's "HTTP call": a blocking wait


async def run_async(enqueued_at: float, cpu_ms: float, io_ms: float = 0.0) -> None:
    """:func:`run` for an event loop: the ``io_ms`` wait yields to other jobs."""
    _start(enqueued_at, cpu_ms)
    if io_ms > 0:
        await asyncio.sleep(io_ms / 1000.0)


def conveyor_handler(payload: Work, ctx: JobContext) -> None:
    """The Conveyor handler (benchmarks/queues.yaml names it)."""
    run(payload.enqueued_at, payload.cpu_ms, payload.io_ms)


async def conveyor_handler_async(payload: Work, ctx: JobContext) -> None:
    """The Conveyor handler of the asyncio pool (swapped in by the benchmark's driver)."""
    await run_async(payload.enqueued_at, payload.cpu_ms, payload.io_ms)


def job_body(cpu_ms: float, io_ms: float = 0.0) -> dict[str, Any]:
    """A fresh payload, stamped now."""
    body: dict[str, Any] = {"enqueued_at": time.time(), "cpu_ms": cpu_ms}
    if io_ms:
        body["io_ms"] = io_ms
    return body


def finished(records_dir: Path) -> int:
    """How many jobs have started so far, over every process's record file."""
    total = 0
    for entry in os.scandir(records_dir):
        if entry.name.endswith(".rec"):
            total += entry.stat().st_size // RECORD_BYTES
    return total


def latencies_s(records_dir: Path) -> list[float]:
    """Enqueue-to-start latency of every recorded job, in seconds."""
    out = []
    for path in records_dir.glob("*.rec"):
        for line in path.read_text().splitlines():
            enqueued, started = line.split()
            out.append(float(started) - float(enqueued))
    return out
