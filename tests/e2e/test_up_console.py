"""``conveyor up`` runs the web console too: on ``--console-port``, named in the banner and
in ``.conveyor/up.json``, stopped with the rest; a busy port is one line naming the option.

The same first-hour set-up as tests/e2e/test_first_hour.py: a project directory of its
own, a shell with no ``AWS_*``/``CONVEYOR_*`` variable, the console script.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.net import free_port
from tests.e2e.test_first_hour import CONVEYOR, HANDLERS, QUEUES, one_line_failure, run, user_env
from tests.support.polling import eventually
from tests.support.processes import Child

pytestmark = pytest.mark.e2e


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "handlers.py").write_text(HANDLERS)
    (root / "queues.yaml").write_text(QUEUES)
    return root


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2.0)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


@pytest.mark.slow
def test_up_serves_the_console_names_it_and_stops_it(project: Path, tmp_path: Path) -> None:
    console_port = free_port()
    console_url = f"http://127.0.0.1:{console_port}"
    up = Child(
        "up",
        [CONVEYOR, "up", "--api-port", str(free_port()), "--console-port", str(console_port)],
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
        assert record["console_url"] == console_url
        assert record["health_urls"]["console"] == f"{console_url}/healthz"
        eventually(lambda: "conveyor is up" in up.text(), what="the banner")
        assert f"console    {console_url}" in up.text()

        # The console serves, on the emulator without keys (as the API does there).
        assert httpx.get(f"{console_url}/healthz", timeout=5).status_code == 200
        overview = httpx.get(f"{console_url}/", timeout=30)
        assert overview.status_code == 200
        assert "jobs" in overview.text  # the project's queue

        up.terminate()
        assert up.wait(timeout_s=60) == 0, up.text()[-3000:]
        assert _refused(f"{console_url}/healthz")  # stopped with the rest
        assert not found.exists()
    finally:
        up.close()


def test_a_busy_console_port_names_the_option(project: Path, listening: int) -> None:
    result = run(project, "up", "--api-port", str(free_port()), "--console-port", str(listening))
    line = one_line_failure(result)
    assert f"port {listening}" in line
    assert "--console-port" in line
