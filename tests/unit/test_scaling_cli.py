"""`conveyor workers scale` and friends refuse bad requests with one readable line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from ops.scaling.store import DesiredStore
from tests import REPO

runner = CliRunner()
TOPOLOGY = REPO / "tests" / "fixtures" / "scaling.yaml"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CONVEYOR_ENVIRONMENT", "unit")
    monkeypatch.delenv("CONVEYOR_SCALING_BACKEND", raising=False)
    return tmp_path / "sc-unit"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["main=5"], "main=5 is outside pools.main.replicas (1..3); pass --force to scale past it"),
        (["nope=1"], "unknown pool 'nope' (known: main)"),
        (["main"], "'main' is not POOL=N (e.g. media=3)"),
        (["main=two"], "'main=two': the replica count must be a whole number"),
        (["main=-1"], "'main=-1': the replica count must not be negative"),
        (["main=1", "main=2"], "pool 'main' is named twice with different counts"),
    ],
)
def test_bad_requests_are_usage_errors_and_change_nothing(
    state_dir: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["workers", "scale", *args])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"conveyor: {message}"
    assert DesiredStore(state_dir).read() == {}


def test_force_passes_the_bounds_and_the_count_is_stored(state_dir: Path) -> None:
    result = runner.invoke(app, ["workers", "scale", "--force", "main=0"])
    assert result.exit_code == 0, result.output
    assert "main: 1 → 0" in result.output  # before: replicas.min, as nothing was stored
    assert "no supervisor is running for sc-unit" in result.output  # applied once one runs
    assert DesiredStore(state_dir).read() == {"main": 0}

    again = runner.invoke(app, ["workers", "scale", "main=0", "--force"])
    assert "main: 0 → 0 (unchanged)" in again.output


def test_ls_without_a_supervisor_says_so(state_dir: Path) -> None:
    runner.invoke(app, ["workers", "scale", "main=2"])
    result = runner.invoke(app, ["workers", "ls", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output[: result.output.rindex("}") + 1])
    (pool,) = document["pools"]
    assert (pool["desired"], pool["running"], pool["nodes"]) == (2, 0, [])
    assert "no supervisor is running" in pool["note"]


def test_unknown_backend_is_a_usage_error(state_dir: Path) -> None:
    result = runner.invoke(app, ["workers", "ls", "--backend", "nomad"])
    assert result.exit_code == 2
    assert "unknown scaling backend 'nomad' (known: local, ecs, kubernetes)" in result.output


def test_ls_table_titles_each_pool_with_its_counts(state_dir: Path) -> None:
    runner.invoke(app, ["workers", "scale", "main=2"])
    result = runner.invoke(app, ["workers", "ls"])
    assert result.exit_code == 0, result.output
    assert "main (local): 2 desired, 0 running" in result.output
    assert "note: no supervisor is running for sc-unit" in result.output
