"""What the test handlers recorded: one JSON line per run in ``<outbox>/<job id>.jsonl``.

The handlers (tests/jobs.py, tests/dlq_jobs.py, tests/storage_jobs.py) run in worker
processes and append to ``$CONVEYOR_TEST_OUTBOX``; tests read the files from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def runs(outbox: Path, job_id: str) -> list[dict[str, Any]]:
    """The runs of ``job_id`` so far, oldest first.

    A line that is not JSON is skipped: it is still being written (read again next
    time), or a node killed with SIGKILL cut it short.
    """
    try:
        text = (outbox / f"{job_id}.jsonl").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    found = []
    for line in text.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def outcomes(outbox: Path, job_id: str) -> list[str]:
    """The outcome of each run of ``job_id`` (``started``, ``ok``, ``failed``)."""
    return [run["outcome"] for run in runs(outbox, job_id)]


def succeeded(outbox: Path, job_id: str) -> bool:
    """Whether some run of ``job_id`` succeeded."""
    return "ok" in outcomes(outbox, job_id)


def jobs_seen(outbox: Path) -> int:
    """How many jobs have run at least once (one file per job)."""
    return sum(1 for path in outbox.iterdir() if path.suffix == ".jsonl")
