"""Recycled pool processes' metric files are folded into one per type, keeping every total."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import metric
from workers.metrics import EXITED, fold_exited_processes

# One pool process's work: a few job metrics written in multiprocess mode, then exit.
CHILD = """
from workers.metrics import instruments
m = instruments()
for _ in range({jobs}):
    m.started.labels("t.job", "work").inc()
    m.duration.labels("t.job", "work").observe(0.02)
"""


def _child(directory: Path, jobs: int) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", CHILD.format(jobs=jobs)], env=env, check=True)


def _page(directory: Path) -> str:
    code = "from workers.metrics import render; print(render({})[0].decode())"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def test_exited_processes_are_folded_and_totals_are_kept(tmp_path: Path) -> None:
    for jobs in (3, 4, 5):
        _child(tmp_path, jobs)
    assert len(list(tmp_path.glob("counter_*.db"))) == 3

    assert fold_exited_processes(str(tmp_path)) == 6  # a counter and a histogram file each
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        f"counter_{EXITED}.db",
        f"histogram_{EXITED}.db",
    ]
    _child(tmp_path, 8)  # a later child, folded by the scrape itself
    page = _page(tmp_path)
    labels = {"job_type": "t.job", "queue": "work"}
    assert metric(page, "conveyor_jobs_started_total", **labels) == 20
    assert metric(page, "conveyor_job_duration_seconds_count", **labels) == 20
    assert metric(page, "conveyor_job_duration_seconds_bucket", le="0.025", **labels) == 20
    assert len(list(tmp_path.glob("*.db"))) == 2


def test_a_living_process_is_not_folded(tmp_path: Path) -> None:
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"")
    assert fold_exited_processes(str(tmp_path)) == 0
    assert (tmp_path / f"counter_{os.getpid()}.db").exists()
