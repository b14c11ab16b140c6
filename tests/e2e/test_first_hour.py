"""A new user's first hour, with real processes: ``conveyor up`` in one shell, the CLI in
another with nothing exported, and start-up failures that are one line each.

Every command here runs in a subprocess whose environment has no ``AWS_*`` or
``CONVEYOR_*`` variable (unless the test is about one), from a project directory with
its own ``mypkg/handlers.py`` beside queues.yaml and no ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from infra.net import free_port
from tests.support.polling import eventually
from tests.support.processes import Child

pytestmark = pytest.mark.e2e

#: The console script, as a user runs it (``python -m`` would add the cwd to sys.path).
CONVEYOR = str(Path(sys.executable).parent / "conveyor")

QUEUES = """\
version: 1
project: firsthour
topics: {work: {}}
queues:
  jobs:
    subscriptions: [{topic: work}]
job_types:
  thing.do:
    topic: work
    payload: "mypkg.handlers:Thing"
    handler: "mypkg.handlers:do_thing"
    ledger: true
pools:
  main: {queues: [jobs], concurrency: 1}
"""

HANDLERS = """\
from pydantic import BaseModel

from conveyor import JobContext


class Thing(BaseModel):
    n: int


def do_thing(payload: Thing, ctx: JobContext) -> None:
    pass
"""


def user_env(**extra: str) -> dict[str, str]:
    """A shell with nothing set up by hand: no AWS_*, CONVEYOR_* or PYTHONPATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "CONVEYOR_")) and k != "PYTHONPATH"
    }
    return {**env, **extra}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "handlers.py").write_text(HANDLERS)
    (root / "queues.yaml").write_text(QUEUES)
    return root


def run(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``conveyor ARGS`` in ``project``, from a second "terminal"."""
    return subprocess.run(
        [CONVEYOR, *args],
        cwd=project,
        env=user_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed start printed on stderr (asserting there is only one)."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("conveyor: ")
    return lines[0]


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port something listens on (a busy port; a TCP endpoint that answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# -- conveyor up, and a second terminal with nothing exported ---------------------------


@pytest.mark.slow
def test_a_second_terminal_finds_the_running_system(project: Path, tmp_path: Path) -> None:
    api_port = free_port()
    up = Child(
        "up",
        # --console-port 0: another test's `up` may hold the console's default port.
        [CONVEYOR, "up", "--api-port", str(api_port), "--console-port", "0"],
        env=user_env(),
        log_dir=tmp_path,
        cwd=project,
    )
    try:
        found = project / ".conveyor" / "up.json"
        record = eventually(
            lambda: up.check_alive() or (json.loads(found.read_text()) if found.exists() else None),
            what="conveyor up to write .conveyor/up.json",
            timeout_s=120,
        )
        assert record["api_url"] == f"http://127.0.0.1:{api_port}"
        assert record["pid"] == up.pid
        assert record["endpoint_url"].startswith("http://127.0.0.1:")
        assert "export AWS_ENDPOINT_URL" not in up.text()  # nothing to export any more

        dlq = run(project, "dlq", "list")
        assert dlq.returncode == 0, dlq.stderr

        status = run(project, "status", "--json")
        assert status.returncode == 0, status.stderr
        target = json.loads(status.stdout)["target"]
        assert target["aws_endpoint_url"] == record["endpoint_url"]
        assert target["api_url"] == record["api_url"]
        assert target["discovery_file"] == str(Path(".conveyor") / "up.json")
        plain = run(project, "status")
        assert plain.stdout.splitlines()[0].startswith("talking to: the emulator")

        # The API on --api-port, found through discovery; the job runs mypkg's handler
        # in a worker's pool process.
        enqueued = run(project, "enqueue", "thing.do", "-d", '{"n": 1}')
        assert enqueued.returncode == 0, enqueued.stderr
        job_id = enqueued.stdout.strip()

        def succeeded() -> dict[str, object] | None:
            shown = run(project, "jobs", "show", job_id, "--json")
            doc = json.loads(shown.stdout) if shown.returncode == 0 else None
            return doc if doc and doc.get("state") == "succeeded" else None

        doc = eventually(succeeded, what=f"job {job_id} to succeed", timeout_s=90)
        queues = doc["queues"]
        runs = queues.values() if isinstance(queues, dict) else queues
        for one in runs:
            queued, started, finished = (
                datetime.fromisoformat(str(at))
                for at in (doc["queued_at"], one["started_at"], one["finished_at"])
            )
            assert queued <= started <= finished, doc

        # Off a terminal, status --watch prints each refresh in turn.
        watched = tmp_path / "watch.out"
        with watched.open("w") as out:
            watch = subprocess.Popen(
                [CONVEYOR, "status", "--watch", "--interval-s", "0.5"],
                cwd=project,
                env=user_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            eventually(
                lambda: watched.read_text().count("\n-- ") >= 2,
                what="two refreshes of status --watch in a pipe",
            )
        finally:
            watch.kill()
            watch.wait()

        # A changed queues.yaml is reported in one line (it applies after a restart).
        (project / "queues.yaml").write_text(QUEUES + "# a new comment\n")
        eventually(
            lambda: "queues.yaml changed: restart `conveyor up`" in up.text(),
            what="conveyor up to notice the changed queues.yaml",
        )

        up.terminate()
        assert up.wait(timeout_s=60) == 0, up.text()[-3000:]
        assert not found.exists()  # removed when `up` stops
    finally:
        up.close()


# -- start-up failures: one line, the fix, non-zero, no traceback -----------------------


def test_a_stale_exported_endpoint_is_one_line(project: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    line = one_line_failure(run(project, "up", AWS_ENDPOINT_URL=closed))
    assert closed in line
    assert "unset AWS_ENDPOINT_URL" in line
    assert "--aws" in line
    line = one_line_failure(run(project, "up", "--aws", AWS_ENDPOINT_URL=closed))
    assert "nothing answers at" in line
    assert "unset AWS_ENDPOINT_URL" in line


def test_a_busy_api_port_names_the_option(project: Path, listening: int) -> None:
    line = one_line_failure(run(project, "up", "--api-port", str(listening)))
    assert f"port {listening}" in line
    assert "--api-port" in line
    # The API on its own names its own option.
    line = one_line_failure(run(project, "api", "--port", str(listening), CONVEYOR_API_AUTH="none"))
    assert f"port {listening} is in use" in line
    assert "--port" in line


def test_a_missing_keys_file_on_aws_is_one_line(project: Path, listening: int) -> None:
    result = run(
        project,
        "up",
        "--aws",
        "--api-port",
        str(free_port()),
        "--console-port",
        "0",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{listening}",
        CONVEYOR_API_KEYS_FILE=str(project / "absent-keys.yaml"),
    )
    line = one_line_failure(result)
    assert "absent-keys.yaml" in line


def test_an_emulator_that_does_not_start_is_one_line_and_debug_shows_why(
    project: Path,
) -> None:
    args = ("up", "--api-port", str(free_port()), "--console-port", "0")
    line = one_line_failure(run(project, *args, CONVEYOR_EMULATOR_FIXES="no-such-fix"))
    assert "the embedded emulator did not start" in line
    assert "no-such-fix" in line
    debug = run(project, *args, "--debug", CONVEYOR_EMULATOR_FIXES="no-such-fix")
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr


def test_an_unreachable_local_api_is_one_line(project: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("enqueue", "thing.do", "-d", '{"n": 1}'), ("jobs", "show", "j-1")):
        result = run(project, *args, "--api-url", url)
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert f"cannot reach {url}" in line
        assert "is `conveyor up` running?" in line
