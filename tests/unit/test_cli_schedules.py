"""``conveyor schedules ls|pause|resume|trigger`` against moto in-process."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from infra.provision import apply
from infra.topology import Topology, load_topology
from producers.schedules import ScheduleFirer, schedule_job_id
from tests.support.queues import queue_url
from tests.support.schedules import create_timers_table, received_jobs
from tests.unit.test_schedule_firer import TOPOLOGY

runner = CliRunner()


@pytest.fixture
def topology(mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Topology:
    path = tmp_path / "queues.yaml"
    path.write_text(TOPOLOGY)
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(path))
    monkeypatch.delenv("CONVEYOR_ENVIRONMENT", raising=False)
    t = load_topology(path)
    apply(t)
    create_timers_table(t)
    return t


def ls_json() -> dict[str, dict[str, object]]:
    result = runner.invoke(app, ["schedules", "ls", "--json"])
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.output)}


def test_ls_shows_next_and_last_fire_and_the_ledger_status(topology: Topology) -> None:
    asked_from = datetime.now(UTC)
    before = ls_json()
    asked_until = datetime.now(UTC)
    assert set(before) == {"minutely", "catchup", "jittery", "idle"}
    minutely = before["minutely"]
    assert minutely["state"] == "active"
    assert minutely["paused"] is False
    assert minutely["timetable"] == "every 1m"
    assert minutely["last_job_id"] is None
    next_fire = datetime.fromisoformat(str(minutely["next_fire"]))
    # The next minute boundary after the moment ls asked.
    assert asked_from < next_fire <= asked_until + timedelta(minutes=1)
    assert next_fire.second == 0
    assert before["idle"]["state"] == "disabled"
    assert before["idle"]["next_fire"] is None
    assert before["catchup"]["misfire"] == "catch_up (up to 3)"

    now = datetime.now(UTC)
    firer = ScheduleFirer(topology, owner="t")
    try:
        assert firer.fire_due(now) == 1  # the tick of this minute is within the grace
    finally:
        firer.close()
    after = ls_json()["minutely"]
    tick = now.replace(second=0, microsecond=0)
    assert after["last_job_id"] == schedule_job_id(topology, "minutely", tick)
    assert after["last_kind"] == "tick"
    assert after["last_status"] == "queued"  # test.record has ledger: true

    table = runner.invoke(app, ["schedules", "ls"])
    assert table.exit_code == 0, table.output
    assert "minutely" in table.output
    assert "every 1m" in table.output


def test_pause_and_resume(topology: Topology) -> None:
    result = runner.invoke(app, ["schedules", "pause", "minutely"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "schedule 'minutely' paused"
    row = ls_json()["minutely"]
    assert row["state"] == "paused"
    assert row["paused"] is True
    assert row["next_fire"] is None
    result = runner.invoke(app, ["schedules", "resume", "minutely"])
    assert result.exit_code == 0, result.output
    assert ls_json()["minutely"]["state"] == "active"


def test_trigger_publishes_a_job_now(topology: Topology) -> None:
    result = runner.invoke(app, ["schedules", "trigger", "idle"])
    assert result.exit_code == 0, result.output
    # Only the command's own line: log lines may share the runner's output.
    [job_id] = re.findall(r"schedule 'idle' fired: job (\S+)", result.output)
    [envelope] = received_jobs(queue_url(topology, "work"))
    assert envelope.id == job_id
    assert envelope.data == {"label": "idle"}
    row = ls_json()["idle"]
    assert row["last_job_id"] == job_id
    assert row["last_kind"] == "trigger"


@pytest.mark.parametrize("command", ["pause", "resume", "trigger"])
def test_an_unknown_name_is_one_line_and_exit_2(topology: Topology, command: str) -> None:
    result = runner.invoke(app, ["schedules", command, "nightly"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "conveyor: unknown schedule 'nightly' (known: catchup, idle, jittery, minutely)"
    )


def test_a_missing_timer_table_is_one_line(
    mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(TOPOLOGY)
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(path))
    monkeypatch.delenv("CONVEYOR_ENVIRONMENT", raising=False)
    result = runner.invoke(app, ["schedules", "pause", "minutely"])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("conveyor: pausing schedule 'minutely': the timer table ")
    assert line.endswith("does not exist: run `conveyor infra apply`")
