"""The CLI fails with one readable line and a usage exit code on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from tests import REPO

runner = CliRunner()


def test_check_accepts_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(REPO / "queues.yaml"))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "OK — 2 topics, 3 queues, 5 job types, 2 pools" in result.output


def test_check_names_file_key_and_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "queues.yaml"
    text = (
        (REPO / "queues.yaml")
        .read_text()
        .replace("topic: media\n    payload", "topic: medya\n    payload", 1)
    )
    broken.write_text(text)
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(broken))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2
    assert (
        f"{broken}: job_types.image.resize.topic: unknown topic 'medya' (known: media, orders)"
        in result.output
    )


def test_missing_topology_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(tmp_path / "absent.yaml"))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2
    assert result.output.strip() == f"{tmp_path / 'absent.yaml'}: file not found"


def test_worker_for_an_unknown_pool_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(REPO / "queues.yaml"))
    result = runner.invoke(app, ["worker", "--pool", "nope"])
    assert result.exit_code == 2
    assert "conveyor: unknown pool 'nope' (known: media, backoffice)" in result.output
