"""`conveyor demo --json` on its own embedded emulator: the sample workload, start to finish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import REPO

pytestmark = pytest.mark.e2e


@pytest.mark.slow
def test_demo_processes_the_sample_workload_and_exits_0(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONVEYOR_"))}
    env["CONVEYOR_QUEUES_FILE"] = str(REPO / "queues.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "demo", "--json", "--timeout-s", "240"],
        cwd=tmp_path,  # its logs go to ./.conveyor under here
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    # 33 valid jobs; order.placed fans out to billing and notifications (5 extra deliveries).
    assert (summary["accepted"], summary["deliveries"], summary["rejected"]) == (33, 38, 1)
    assert summary["unfinished"] == 0
    assert summary["succeeded"] + summary["dead_lettered"] == summary["deliveries"]
    # invoice.render always fails permanently: its 3 jobs are dead-lettered with the reason.
    assert summary["dead_letter_reasons"] == {"permanent_error": 3}
    assert Path(tmp_path, summary["logs"], "worker-media.log").exists()
