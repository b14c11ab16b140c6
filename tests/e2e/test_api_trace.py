"""End to end: a W3C traceparent sent to the API reaches the worker's logs; wait() sees success.

The API, a worker pool and the emulator run as separate processes (``local_system``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli import app as conveyor_cli
from conveyor.system import LocalSystem, local_system
from infra.topology import load_topology
from producers.client import Client
from tests import REPO
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def system(
    aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalSystem]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    queues_file = REPO / "tests" / "fixtures" / "producer.yaml"
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(queues_file))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # worker processes import tests.jobs
    with local_system(load_topology(queues_file), use_emulator=False, log_dir=tmp_path) as running:
        yield running


def _worker_events(log_dir: Path, job_id: str) -> list[dict[str, object]]:
    """The JSON log events of worker processes that name ``job_id``."""
    events = []
    for path in log_dir.rglob("*.log"):
        if path.name.startswith(("api", "emulator")):
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if job_id in line and line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    return events


def test_the_request_trace_reaches_the_worker_and_wait_sees_success(
    system: LocalSystem, tmp_path: Path
) -> None:
    with Client(system.api_url) as client:
        [single] = client.enqueue_many(
            [{"type": "note.record", "data": {"label": "traced"}}], traceparent=TRACEPARENT
        )
        assert single.accepted, single.error
        assert single.id is not None
        done = client.wait(single.id, timeout_s=60)
    assert done.state == "succeeded"
    assert done.queues["work"]["attempt"] == 1
    assert done.raw["trace_id"] == TRACE_ID

    events = eventually(
        lambda: [e for e in _worker_events(tmp_path, single.id) if e.get("trace_id")],
        what="a worker log event of the job with its trace id",
    )
    assert {e["trace_id"] for e in events} == {TRACE_ID}
    assert {e["queue"] for e in events} == {"work"}

    show = CliRunner().invoke(
        conveyor_cli, ["jobs", "show", single.id, "--api-url", system.api_url]
    )
    assert show.exit_code == 0, show.output
    assert "succeeded" in show.stdout
