"""The console's job and schedule pages over HTTP, AWS being a real moto server: the ledger
timeline per queue, lookup by job id and by idempotency key, cancelling from the page
(the API's own cancellation, injected by conveyor/cli/console.py), and the schedule rows
and their buttons.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor.cli.console import ConsoleSchedules, canceller, idempotency_finder
from infra import provision
from infra.aws.names import IDEMPOTENCY_TABLE
from infra.ledger import QueuedJob, RunUpdate, ledger_for
from infra.topology import Topology, load_topology
from ops.console.app import create_app
from ops.console.deps import ConsoleDeps
from producers.idempotency import IdempotencyStore
from tests import REPO
from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration

QUEUES_FILE = REPO / "tests" / "fixtures" / "cancel.yaml"
SCHEDULES = """
schedules:
  nightly:
    cron: "30 2 * * *"
    job_type: cancel.plain
    data: {label: nightly}
"""
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def topology(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Topology:
    # cancel.yaml and one cron schedule.
    queues_file = tmp_path / "queues.yaml"
    queues_file.write_text(QUEUES_FILE.read_text() + SCHEDULES)
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(queues_file))
    monkeypatch.setenv("CONVEYOR_STATE_DIR", str(tmp_path / "state"))
    found = load_topology(queues_file, environment=aws_env.environment)
    provision.apply(found)
    return found


@pytest.fixture
def schedules(topology: Topology) -> ConsoleSchedules:
    return ConsoleSchedules(topology)


@pytest.fixture
def client(topology: Topology, schedules: ConsoleSchedules) -> Iterator[TestClient]:
    deps = ConsoleDeps(
        topology=topology,
        authenticate=None,
        session_secret=b"s" * 32,
        cancel=canceller(topology),
        find_idempotency_key=idempotency_finder(topology, ["-"]),
        schedules=schedules,
    )
    with TestClient(create_app(deps, sample=False)) as found:
        yield found


def _csrf(client: TestClient, path: str) -> str:
    found = CSRF.search(client.get(path).text)
    assert found is not None
    return found.group(1)


def test_a_jobs_timeline_per_queue_and_its_twin(topology: Topology, client: TestClient) -> None:
    ledger = ledger_for(topology)
    assert ledger is not None
    now = datetime.now(UTC)
    ledger.record_queued(
        [QueuedJob("job-tl", "cancel.slow", ["busy"], queued_at=now - timedelta(seconds=9))]
    )
    ledger.record_run(
        RunUpdate("busy", "job-tl", "cancel.slow", "running", 1, at=now - timedelta(seconds=8))
    )
    ledger.record_run(
        RunUpdate(
            "busy",
            "job-tl",
            "cancel.slow",
            "retrying",
            1,
            at=now - timedelta(seconds=7),
            next_attempt_at=now + timedelta(seconds=30),
            error="TimeoutError: upstream",
        )
    )

    page = client.get("/jobs/job-tl")
    assert page.status_code == 200
    timeline = re.search(
        r'data-testid="timeline" data-queue="busy">(.*?)</section>', page.text, re.S
    )
    assert timeline is not None
    states = re.findall(r'class="state [^"]*">([^<]+)<', timeline.group(1))
    assert states == ["queued", "running", "retrying"]
    assert "TimeoutError: upstream" in timeline.group(1)
    assert 'data-testid="cancel-job"' in page.text  # retrying between attempts: cancellable

    twin = client.get("/api/jobs/job-tl").json()
    record = ledger.get("job-tl")
    assert record is not None
    assert twin == record.model_dump(mode="json")
    assert twin["queues"]["busy"]["state"] == "retrying"

    missing = client.get("/jobs/no-such-job")
    assert missing.status_code == 404
    assert 'data-testid="error-banner"' in missing.text


def test_cancel_from_the_page(topology: Topology, client: TestClient) -> None:
    ledger = ledger_for(topology)
    assert ledger is not None
    ledger.record_queued([QueuedJob("job-cx", "cancel.solo", ["later-solo"])])
    token = _csrf(client, "/jobs/job-cx")
    answer = client.post("/jobs/job-cx/cancel", data={"csrf_token": token})
    assert answer.status_code == 200
    assert "cancelled: a worker that receives it deletes it without running it" in answer.text
    assert re.search(r'data-testid="job-state">cancelled<', answer.text)
    assert 'data-testid="cancel-job"' not in answer.text
    record = ledger.get("job-cx")
    assert record is not None
    assert record.state == "cancelled"


def test_lookup_by_job_id_or_idempotency_key(topology: Topology, client: TestClient) -> None:
    ledger = ledger_for(topology)
    assert ledger is not None
    ledger.record_queued([QueuedJob("job-ik", "cancel.solo", ["later-solo"])])
    store = IdempotencyStore(topology.resource_name(IDEMPOTENCY_TABLE))
    try:
        store.claim("-", "order-42", "fp", "cancel.solo", "job-ik")
    finally:
        store.close()

    by_id = client.get("/jobs", params={"q": "job-ik"}, follow_redirects=False)
    assert by_id.headers["location"] == "/jobs/job-ik"  # one match: its page at once
    assert 'data-testid="timeline"' in client.get("/jobs", params={"q": "order-42"}).text
    by_key = client.get("/api/jobs", params={"q": "order-42"}).json()
    assert by_key["matches"] == [{"job_id": "job-ik", "via": "idempotency key of '-'", "type": ""}]
    nothing = client.get("/jobs", params={"q": "unknown-thing"})
    assert nothing.status_code == 200
    assert "No job with id or idempotency key" in nothing.text


def test_schedule_rows_and_their_actions(client: TestClient) -> None:
    page = client.get("/schedules").text
    row = re.search(r'data-testid="schedule-nightly">(.*?)</tr>', page, re.S)
    assert row is not None
    assert re.search(r'data-testid="schedule-state">active<', row.group(1))
    assert 'data-testid="schedule-pause-nightly"' in row.group(1)
    assert 'data-testid="schedule-trigger-nightly"' in row.group(1)
    token = _csrf(client, "/schedules")

    paused = client.post("/schedules/nightly/pause", data={"csrf_token": token})
    assert paused.status_code == 200
    assert "schedule &#39;nightly&#39; paused" in paused.text
    assert client.get("/api/schedules").json()["schedules"][0]["state"] == "paused"
    assert 'data-testid="schedule-resume-nightly"' in client.get("/schedules").text

    fired = client.post("/schedules/nightly/trigger", data={"csrf_token": token})
    job = re.search(r"fired: job ([0-9a-f-]+)", fired.text)
    assert job is not None
    resumed = client.post("/schedules/nightly/resume", data={"csrf_token": token})
    assert "resumed" in resumed.text
    listed = client.get("/api/schedules").json()["schedules"][0]
    assert (listed["state"], listed["last_job_id"], listed["last_kind"]) == (
        "active",
        job.group(1),
        "trigger",
    )
    unknown = client.post("/schedules/weekly/pause", data={"csrf_token": token})
    assert unknown.status_code == 404
