"""compose.yaml (no Docker engine here: parsed and checked, not run).

Every service's command must be a real ``conveyor`` command with real options, and
there must be a worker for every pool of queues.yaml.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from conveyor.cli import app
from infra.topology import load_topology
from tests import REPO

COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_command_is_a_conveyor_command(name: str) -> None:
    service = SERVICES[name]
    assert service["build"]["context"] == "."
    command = service["command"]
    assert isinstance(command, list)
    # --help is eager: typer parses the options given before it, then prints the help.
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_services_cover_the_emulator_the_api_and_every_pool() -> None:
    commands = {name: s["command"] for name, s in SERVICES.items()}
    assert commands["emulator"][0] == "emulator"
    assert commands["infra-apply"] == ["infra", "apply"]
    assert commands["api"][0] == "api"
    pools = {c[c.index("--pool") + 1] for c in commands.values() if c[0] == "worker"}
    assert pools == set(load_topology(REPO / "queues.yaml").pools)


def test_health_check_urls_match_the_ports_served() -> None:
    for service in SERVICES.values():
        command = service["command"]
        url = service["environment"].get("CONVEYOR_HEALTHCHECK_URL", "")
        if command[0] == "api":
            assert urlsplit(url).port == int(command[command.index("--port") + 1])
        elif command[0] == "worker":
            assert urlsplit(url).port == int(command[command.index("--health-port") + 1])
        else:
            assert url == ""


def test_clients_reach_the_emulator_it_serves() -> None:
    emulator = SERVICES["emulator"]["command"]
    port = int(emulator[emulator.index("--port") + 1])
    for name, service in SERVICES.items():
        if name != "emulator":
            assert service["environment"]["AWS_ENDPOINT_URL"] == f"http://emulator:{port}"


def test_only_the_emulator_runs_the_emulator_image() -> None:
    """moto is installed in the Dockerfile's `emulator` target only: the others run production."""
    stages = re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    for service in SERVICES.values():
        target = service["build"]["target"]
        assert target in stages
        assert target == ("emulator" if service["command"][0] == "emulator" else "production")
    # Two targets, two images: one tag for both would let one build overwrite the other.
    images = {s["build"]["target"]: s["image"] for s in SERVICES.values()}
    assert len(set(images.values())) == len(images) == 2
