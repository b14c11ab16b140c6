"""``python -m benchmarks.heap_probe worker …``: ``conveyor worker``, tracing its job processes.

A diagnostic for the soak benchmark (``--probe DIR``), not part of Conveyor. Every
process that runs jobs (each prefork child, or the node itself for threads and
solo pools) traces its allocations from its first job on and writes a snapshot to
``$SOAK_HEAP_DIR/<pid>-<jobs>.snap`` after each of :data:`SNAPSHOT_AT` jobs it ran,
and the modules it imported to ``<pid>-modules.txt`` after its first job.
``python -m benchmarks.heap_probe diff DIR`` prints, per process, the allocation
sites that grew most between its first and last snapshot.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

#: After how many jobs of one process a snapshot is written.
SNAPSHOT_AT = (1, 250, 500, 1500, 3000, 5000)
FRAMES = 12

_lock = threading.Lock()
_jobs = [0]


def _start(**_: Any) -> None:
    _jobs[0] = 0
    if not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)


def _start_unless_prefork(sender: Any = None, **_: Any) -> None:
    # worker_ready fires in the node; a prefork node's jobs run in its children.
    modules = "\n".join(sorted(sys.modules))
    (Path(os.environ["SOAK_HEAP_DIR"]) / "node-modules.txt").write_text(modules)
    if type(getattr(sender, "pool", None)).__module__ != "celery.concurrency.prefork":
        _start()


def _count(**_: Any) -> None:
    with _lock:
        _jobs[0] += 1
        count = _jobs[0]
    if count == 1:  # what the process holds once it ran a job
        modules = "\n".join(sorted(sys.modules))
        (Path(os.environ["SOAK_HEAP_DIR"]) / f"{os.getpid()}-modules.txt").write_text(modules)
    if count in SNAPSHOT_AT:
        gc.collect()  # cyclic garbage waiting for a collection is not growth
        snap = tracemalloc.take_snapshot()
        snap.dump(str(Path(os.environ["SOAK_HEAP_DIR"]) / f"{os.getpid()}-{count}.snap"))


def diff(directory: Path, top: int = 15) -> None:
    """Print the top growing allocation sites of each process between its snapshots."""
    by_pid: dict[str, list[Path]] = {}
    for path in directory.glob("*.snap"):
        by_pid.setdefault(path.stem.split("-")[0], []).append(path)
    for pid, found in sorted(by_pid.items()):
        # From the first snapshot after job 1 on: the first job's allocations are start-up.
        paths = sorted(found, key=lambda p: int(p.stem.split("-")[1]))
        paths = [p for p in paths if int(p.stem.split("-")[1]) > 1] or paths
        if len(paths) < 2:
            continue
        first, last = paths[0], paths[-1]
        jobs = int(last.stem.split("-")[1]) - int(first.stem.split("-")[1])
        old = tracemalloc.Snapshot.load(str(first))
        new = tracemalloc.Snapshot.load(str(last))
        stats = new.compare_to(old, "traceback")
        total = sum(s.size_diff for s in stats)
        print(f"== pid {pid}: {first.name} -> {last.name}: {total:+,} B over {jobs} jobs")
        print(f"   = {total / jobs:+.1f} B per job")
        for stat in stats[:top]:
            print(f"{stat.size_diff:+,} B ({stat.count_diff:+} blocks)")
            for line in stat.traceback.format()[-2 * FRAMES :]:
                print("    " + line)


def main() -> None:
    """``diff DIR``, or run the conveyor CLI with the probe's signal handlers."""
    if sys.argv[1:2] == ["diff"]:
        diff(Path(sys.argv[2]))
        return
    from celery import signals  # noqa: PLC0415

    # Prefork children trace from their start; threads and solo run jobs in the node.
    signals.worker_process_init.connect(_start, weak=False)
    signals.task_postrun.connect(_count, weak=False)
    signals.worker_ready.connect(_start_unless_prefork, weak=False)
    from conveyor.cli import main as conveyor  # noqa: PLC0415

    conveyor()


if __name__ == "__main__":
    main()
