"""Local discovery: what a command in another shell talks to, and why (infra.discovery).

The contract: ``.conveyor/up.json`` beside queues.yaml, written by ``conveyor up``;
explicit settings always win; a file whose ``up`` is gone is ignored.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.cli.api import api_client
from infra import discovery
from infra.discovery import (
    DEFAULT_API_URL,
    Discovered,
    apply_discovery,
    current_target,
    discovery_path,
    endpoint_hint,
    read_discovery,
    remove_discovery,
    resolve_api_url,
    write_discovery,
)
from producers.client import Client, EnqueueError

EMULATOR = "http://127.0.0.1:45999"
API = "http://127.0.0.1:8123"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project directory, and a shell with no AWS or Conveyor settings at all."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "CONVEYOR_")):
            monkeypatch.delenv(name)
    (tmp_path / "queues.yaml").write_text("version: 1\n")
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(tmp_path / "queues.yaml"))
    monkeypatch.setattr(discovery, "_applied", None)
    monkeypatch.setattr(discovery, "_applied_path", None)
    yield tmp_path
    # apply_discovery set variables the monkeypatch does not know of: drop them.
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.pop(name, None)
    for name in ("AWS_DEFAULT_REGION", "CONVEYOR_ENVIRONMENT", "CONVEYOR_STATE_DIR"):
        os.environ.pop(name, None)


def record(pid: int, **changes: object) -> Discovered:
    values: dict[str, object] = {
        "pid": pid,
        "api_url": API,
        "endpoint_url": EMULATOR,
        "region": "us-east-1",
        "queues_file": "/p/queues.yaml",
        "project": "mine",
        "environment": "dev7",
        "state_dir": "/p/.conveyor/state/mine-dev7",
        "health_urls": {"api": f"{API}/healthz"},
    }
    values.update(changes)
    return Discovered(**values)  # type: ignore[arg-type]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def test_the_file_lives_beside_queues_yaml(project: Path) -> None:
    assert discovery_path() == project / ".conveyor" / "up.json"


def test_with_nothing_set_a_running_up_is_what_commands_talk_to(project: Path) -> None:
    write_discovery(discovery_path(), record(os.getpid()))
    assert apply_discovery() is not None
    assert os.environ["AWS_ENDPOINT_URL"] == EMULATOR
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["CONVEYOR_ENVIRONMENT"] == "dev7"
    assert os.environ["CONVEYOR_STATE_DIR"] == "/p/.conveyor/state"
    assert resolve_api_url()[0] == API
    target = current_target()
    assert (target.aws_endpoint_url, target.api_url, target.up_pid) == (EMULATOR, API, os.getpid())
    assert target.line().startswith(f"talking to: the emulator {EMULATOR} and the API {API}")
    assert target.to_json()["discovery_file"] == str(discovery_path())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_PROFILE", "prod"),
        ("CONVEYOR_USE_AWS", "true"),
        ("CONVEYOR_DISCOVERY", "false"),
    ],
)
def test_explicit_aws_settings_win(
    project: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    write_discovery(discovery_path(), record(os.getpid()))
    monkeypatch.setenv(variable, value)
    assert apply_discovery() is None
    assert os.environ.get("AWS_ENDPOINT_URL") in (None, "http://127.0.0.1:4566")
    assert current_target().discovery_file is None


def test_an_explicit_api_url_wins_in_order(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_discovery(discovery_path(), record(os.getpid()))
    assert resolve_api_url("http://x:1") == ("http://x:1", "--api-url")
    monkeypatch.setenv("CONVEYOR_API_URL", "http://y:2")
    assert resolve_api_url() == ("http://y:2", "CONVEYOR_API_URL")
    assert Client().base_url == "http://y:2"
    monkeypatch.delenv("CONVEYOR_API_URL")
    assert Client().base_url == API  # the Python client finds the running `up` too


def test_an_explicit_environment_is_kept(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_discovery(discovery_path(), record(os.getpid()))
    monkeypatch.setenv("CONVEYOR_ENVIRONMENT", "mine")
    apply_discovery()
    assert os.environ["CONVEYOR_ENVIRONMENT"] == "mine"


def test_a_stale_file_is_ignored(project: Path) -> None:
    write_discovery(discovery_path(), record(dead_pid()))
    assert read_discovery() is None
    assert read_discovery(live_only=False) is not None
    assert apply_discovery() is None
    assert "AWS_ENDPOINT_URL" not in os.environ
    assert resolve_api_url() == (DEFAULT_API_URL, "the default")


def test_unreadable_or_foreign_files_are_ignored(project: Path) -> None:
    path = discovery_path()
    path.parent.mkdir(parents=True)
    for text in ("{", "[]", '{"version": 99, "pid": 1}', '{"version": 1}'):
        path.write_text(text)
        assert read_discovery(live_only=False) is None


def test_up_removes_only_its_own_file(project: Path) -> None:
    path = discovery_path()
    write_discovery(path, record(os.getpid()))
    remove_discovery(path, os.getpid() + 1)  # another `up` replaced it: not ours to remove
    assert path.exists()
    remove_discovery(path, os.getpid())
    assert not path.exists()
    assert not list(path.parent.glob(".up.json.*"))  # no temporary file left behind


def test_the_hint_names_the_setting_that_pointed_at_the_endpoint(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert endpoint_hint() == ""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert "`unset AWS_ENDPOINT_URL`" in endpoint_hint()
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    write_discovery(discovery_path(), record(os.getpid()))
    apply_discovery()
    assert str(discovery_path()) in endpoint_hint()


def test_the_cli_does_not_retry_a_refused_local_api(project: Path) -> None:
    assert not api_client("http://127.0.0.1:9", None, 5.0).retry_refused
    assert api_client("https://jobs.example.com", None, 5.0).retry_refused


def test_a_client_that_does_not_retry_refusals_answers_at_once() -> None:
    sleeps: list[float] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    with (
        Client(
            "http://127.0.0.1:9",
            transport=httpx.MockTransport(refuse),
            sleep=sleeps.append,
            retry_refused=False,
        ) as api,
        pytest.raises(EnqueueError, match="cannot reach"),
    ):
        api.enqueue("image.resize", {})
    assert sleeps == []  # not one wait: the retry budget is for real failures
