"""What a worker node loads: pool children are forks of it, so they carry whatever it imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import REPO

#: Code a worker node must not hold: the API and its client, provisioning, export,
#: the emulator, the operator tools.
FORBIDDEN = (
    "fastapi",
    "uvicorn",
    "starlette",
    "httpx",
    "moto",
    "producers",
    "ops",
    "infra.provision",
    "infra.export",
    "infra.emulator",
    "conveyor.system",
)

# `conveyor worker` up to the point where the node forks its pool (without running it).
NODE = """
import json, sys
sys.argv = ["conveyor", "worker", "--help"]
from conveyor.cli import main
try:
    main()
except SystemExit:
    pass
from conveyor.cli.common import load
from workers.app import create_app
from workers.node import run_node
topology = load()
create_app(topology, topology.pools["media"].queues, bindings=[])
print(json.dumps(sorted(sys.modules)))
"""


def test_a_worker_node_loads_no_api_provisioning_export_emulator_or_operator_code() -> None:
    env = {**os.environ, "CONVEYOR_QUEUES_FILE": str(REPO / "queues.yaml")}
    out = subprocess.run(
        [sys.executable, "-c", NODE], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    modules = json.loads(out.stdout.splitlines()[-1])
    assert "workers.node" in modules
    loaded = [m for m in modules if any(m == f or m.startswith(f"{f}.") for f in FORBIDDEN)]
    assert loaded == []


def test_the_full_cli_still_has_every_command() -> None:
    import typer  # noqa: PLC0415

    from conveyor.cli import app  # noqa: PLC0415 - built on first access

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    assert {"worker", "api", "check", "infra", "dlq", "workers", "jobs"} <= set(group.commands)
