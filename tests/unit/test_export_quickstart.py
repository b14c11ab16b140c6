"""The quickstart's commands that need no running system run as written.

docs/quickstart.md marks such blocks with ``<!-- quickstart: run -->``; each line
of them is run with this environment's ``conveyor`` in a scratch directory that
holds a copy of queues.yaml, as a fresh clone would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests import REPO

MARKER = "<!-- quickstart: run -->"


def _runnable_commands() -> list[str]:
    text = (REPO / "docs" / "quickstart.md").read_text()
    blocks = re.findall(re.escape(MARKER) + r"\s*```sh\n(.*?)```", text, flags=re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def test_quickstart_commands_run_as_written(tmp_path: Path) -> None:
    commands = _runnable_commands()
    assert [c.split()[:3] for c in commands] == [
        ["conveyor", "check"],
        ["conveyor", "infra", "export"],
        ["conveyor", "infra", "export"],
    ]
    # The repository's sample: queues.yaml and the handler modules beside it.
    shutil.copy(REPO / "queues.yaml", tmp_path / "queues.yaml")
    shutil.copytree(REPO / "sample_jobs", tmp_path / "sample_jobs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONVEYOR_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for command in commands:
        result = subprocess.run(
            shlex.split(command),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    template = json.loads((tmp_path / "conveyor.cfn.json").read_text())
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    manifests = [yaml.safe_load(p.read_text()) for p in sorted((tmp_path / "k8s").glob("*.yaml"))]
    assert {"Deployment", "ScaledObject", "TriggerAuthentication", "Service"} <= {
        m["kind"] for m in manifests
    }
