"""The producer API runs on uvloop when it is installed, and says so in its log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from infra.provision import apply
from infra.topology import load_topology
from tests.support.polling import eventually
from tests.support.processes import Api

if TYPE_CHECKING:
    from tests.support.emulator import AwsEnv

REPO = Path(__file__).resolve().parents[2]
QUEUES_FILE = REPO / "queues.yaml"


def _event_loop_lines(text: str) -> list[dict[str, object]]:
    lines = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "api.event_loop":
            lines.append(event)
    return lines


def test_the_running_api_serves_on_uvloop(aws_env: AwsEnv, tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    apply(load_topology(QUEUES_FILE, environment=aws_env.environment))
    api = Api(
        env={
            **aws_env.env,
            "CONVEYOR_API_AUTH": "none",
            "CONVEYOR_QUEUES_FILE": str(QUEUES_FILE),
            "CONVEYOR_LOG_FORMAT": "json",
        },
        log_dir=tmp_path,
    )
    try:
        api.wait_ready()
        [line] = eventually(
            lambda: _event_loop_lines(api.text()) or None, what="the api.event_loop line"
        )
        assert str(line["loop"]).startswith("uvloop"), line
    finally:
        api.stop()
