"""``conveyor workers autoscale --once --dry-run`` prints each decision once: on stdout,
not again as a log line on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra.provision import apply
from infra.topology import load_topology
from tests import REPO
from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration

TOPOLOGY = REPO / "tests" / "fixtures" / "scaling.yaml"


def test_each_decision_is_printed_once_per_stream(aws_env: AwsEnv, tmp_path: Path) -> None:
    topology = load_topology(TOPOLOGY, environment=aws_env.environment)
    apply(topology)
    env = {
        **aws_env.env,
        "CONVEYOR_QUEUES_FILE": str(TOPOLOGY),
        "CONVEYOR_STATE_DIR": str(tmp_path),
        "CONVEYOR_LOG_FORMAT": "json",
    }
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "workers", "autoscale", "--once", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    decisions = [line for line in result.stdout.splitlines() if line.startswith("(dry run)")]
    assert len(decisions) == len(topology.pools) == 1, result.stdout
    assert "main" in decisions[0]
    assert "autoscale.decision" not in result.stderr, result.stderr
