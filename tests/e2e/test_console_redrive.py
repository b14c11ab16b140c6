"""End to end over HTTP (no browser): real workers dead-letter a job; the console shows it on
the dead-letter page with its reason; once its dependency is fixed, a redrive from the page
(preview, confirm, progress) sends it back and it runs again; the overview counts what the
worker nodes did. The browser suite (tests/browser) drives the same flow in Chromium.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conveyor.system import LocalSystem, local_system
from infra.topology import Topology, load_topology
from ops.console.app import create_app
from ops.console.deps import ConsoleDeps
from ops.scaling.backends import backend_for
from tests import REPO
from tests.dlq_jobs import DEPENDENCY_DOWN
from tests.support import outbox as handler_outbox
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from tests.support.queues import url_by_name, visible_in_flight

pytestmark = pytest.mark.e2e

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Running:
    system: LocalSystem
    topology: Topology
    outbox: Path
    console: TestClient


@pytest.fixture
def running(aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / DEPENDENCY_DOWN).touch()
    queues_file = REPO / "tests" / "fixtures" / "dlq.yaml"
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(queues_file))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # worker processes import tests.dlq_jobs
    topology = load_topology(queues_file)
    with local_system(topology, use_emulator=False, log_dir=tmp_path) as system:
        assert system.state_dir is not None
        deps = ConsoleDeps(
            topology=topology,
            authenticate=None,
            backend=backend_for("local", topology, state_dir=system.state_dir),
            session_secret=b"s" * 32,
            sample_interval_s=1.0,
        )
        with TestClient(create_app(deps)) as console:  # the sampler runs
            yield Running(system, topology, outbox, console)


def test_a_dead_job_is_shown_redriven_from_the_page_and_runs_again(running: Running) -> None:
    answer = httpx.post(
        f"{running.system.api_url}/v1/jobs/dlq.fragile", json={"label": "flaky"}, timeout=10
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    dlq_name = running.topology.dlq_name("work")
    eventually(lambda: visible_in_flight(url_by_name(dlq_name)) == (1, 0), what="the dead letter")

    page = running.console.get("/dead-letters/work").text
    row = re.search(rf'data-testid="dlq-job" data-job-id="{job_id}">(.*?)</tr>', page, re.S)
    assert row is not None
    assert "attempts_exhausted" in row.group(1)
    assert "ConnectionError" in row.group(1)

    (running.outbox / DEPENDENCY_DOWN).unlink()  # fixed
    token = CSRF.search(page)
    assert token is not None
    preview = running.console.post(
        "/dead-letters/work/redrive/preview",
        data={"csrf_token": token.group(1), "job_id": [job_id]},
    )
    message_ids = re.findall(r'name="message_id" value="([^"]+)"', preview.text)
    assert len(message_ids) == 1
    started = running.console.post(
        "/dead-letters/work/redrive",
        data={"csrf_token": token.group(1), "message_id": message_ids},
        follow_redirects=False,
    )
    task_id = started.headers["location"].rsplit("/", 1)[-1]

    def done() -> str | None:
        fragment = running.console.get(f"/fragments/redrive/{task_id}").text
        found = re.search(r'data-testid="redrive-done">([^<]+)<', fragment)
        return found.group(1) if found else None

    assert eventually(done, what="the redrive").startswith("moved 1 of 1")
    eventually(
        lambda: [r["outcome"] for r in handler_outbox.runs(running.outbox, job_id)][-1:] == ["ok"],
        what="the redriven job to run again and succeed",
    )

    # The overview counts the node's outcomes (its /metrics, sampled every second).
    def counted() -> dict[str, int] | None:
        doc = running.console.get("/api/overview").json()
        work = doc["last_hour"]["by_queue"]["work"]
        return work if doc["last_hour"]["known"] and work["succeeded"] >= 1 else None

    assert eventually(counted, what="the overview's count")["succeeded"] >= 1
    pools = running.console.get("/api/pools").json()
    (main,) = pools["pools"]
    assert (main["desired"], main["running"]) == (1, 1)
