"""The console's dead-letter pages over HTTP (in-process ASGI client), AWS being a real moto
server: bounded sampling of a deep DLQ, the JSON twins against the CLI's ``--json``, and
the redrive, delete and export flows as a browser would post them.

The console runs in this process (``TestClient``) so that the AWS requests one page load
makes can be counted exactly (:func:`infra.aws.request_counts`, which counts every
signed request); the sampler thread is off, so nothing else calls SQS meanwhile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conveyor.cli import status as status_cli
from conveyor.cli import workers as workers_cli
from conveyor.cli.dlq import app as dlq_cli
from infra import aws, provision
from infra.topology import Topology, load_topology
from ops.console.app import create_app
from ops.console.deps import ConsoleDeps
from ops.console.views import SAMPLE_RECEIVES, SAMPLE_SIZE
from ops.scaling.autoscaler import Autoscaler
from ops.scaling.backends import backend_for
from tests import REPO
from tests.support.polling import eventually
from tests.support.queues import dead_letter, visible_in_flight

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration

QUEUES_FILE = REPO / "tests" / "fixtures" / "dlq.yaml"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Site:
    """The provisioned topology, an SQS client and a console client."""

    def __init__(self, topology: Topology, client: TestClient) -> None:
        self.topology = topology
        self.client = client
        self.sqs: SQSClient = aws.client("sqs")

    def url(self, name: str) -> str:
        return self.sqs.get_queue_url(QueueName=name)["QueueUrl"]

    @property
    def work_dlq(self) -> str:
        return self.url(self.topology.dlq_name("work"))

    @property
    def work(self) -> str:
        return self.url(self.topology.queue_name("work"))

    def csrf(self, path: str = "/") -> str:
        match = CSRF.search(self.client.get(path).text)
        assert match is not None
        return match.group(1)

    def receives(self) -> int:
        return aws.request_counts().get("sqs.ReceiveMessage", 0)


@pytest.fixture
def site(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Site]:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(QUEUES_FILE))
    monkeypatch.setenv("CONVEYOR_STATE_DIR", str(tmp_path / "state"))
    topology = load_topology(QUEUES_FILE, environment=aws_env.environment)
    provision.apply(topology)
    deps = ConsoleDeps(
        topology=topology,
        authenticate=None,
        backend=backend_for("local", topology),
        session_secret=b"s" * 32,
        aws_timeout_s=30.0,  # a deep DLQ on a busy shared emulator: the bound is not the point
    )
    with TestClient(create_app(deps, sample=False)) as client:
        yield Site(topology, client)


def _fill(site: Site, count: int) -> None:
    """``count`` dead-lettered jobs in work's DLQ (copies of one, each its own message)."""
    one = dead_letter(site.sqs, site.work_dlq, "dlq.fragile", "deep")
    message = site.sqs.receive_message(
        QueueUrl=site.work_dlq, MessageAttributeNames=["All"], VisibilityTimeout=0
    )["Messages"][0]
    attributes = {
        k: {f: v[f] for f in ("DataType", "StringValue") if f in v}
        for k, v in message.get("MessageAttributes", {}).items()
    }
    for start in range(1, count, 10):
        entries: Any = [
            {"Id": str(i), "MessageBody": message["Body"], "MessageAttributes": attributes}
            for i in range(min(10, count - start))
        ]
        site.sqs.send_message_batch(QueueUrl=site.work_dlq, Entries=entries)
    assert one.id


@pytest.mark.slow
def test_a_dlq_of_10000_messages_is_sampled_not_scanned(site: Site) -> None:
    _fill(site, 10_000)
    eventually(lambda: visible_in_flight(site.work_dlq) == (10_000, 0), timeout_s=60, what="filled")

    before = site.receives()
    page = site.client.get("/dead-letters/work")
    receives = site.receives() - before

    assert page.status_code == 200
    assert 'data-testid="error-banner"' not in page.text
    note = re.search(r'data-testid="sample-note">([^<]+)<', page.text)
    assert note is not None
    assert note.group(1).startswith("a sample:"), note.group(1)
    assert "~10000" in note.group(1)
    assert page.text.count('data-testid="dlq-job"') == SAMPLE_SIZE
    # Bounded per page load, whatever the depth: never a scan of the queue.
    assert 0 < receives <= SAMPLE_RECEIVES
    twin = site.client.get("/api/dead-letters/work").json()
    assert twin["sampled"] is True
    assert twin["depth"] == 10_000
    assert twin["scanned"] <= SAMPLE_RECEIVES * 10
    assert twin["groups"] == [
        {
            "reason": "attempts_exhausted",
            "type": "dlq.fragile",
            "error_type": "ValueError",
            "count": SAMPLE_SIZE,
        }
    ]
    # A filter that matches nothing would need the whole queue to prove it: still bounded.
    before = site.receives()
    filtered = site.client.get("/dead-letters/work", params={"error": "matches-no-job"})
    assert 0 < site.receives() - before <= SAMPLE_RECEIVES
    note = re.search(r'data-testid="sample-note">([^<]+)<', filtered.text)
    assert note is not None
    assert note.group(1).startswith("a sample: 0 jobs matching"), note.group(1)
    # Nothing consumed: every message is visible again once the page is served.
    assert visible_in_flight(site.work_dlq) == (10_000, 0)


def _cli_json(app: Any, *args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


_STABLE = ("message_id", "job_id", "type", "reason", "error_type", "error_message", "payload")


def test_the_dlq_twins_hold_what_the_cli_prints(site: Site) -> None:
    for label in ("a", "b", "c"):
        dead_letter(site.sqs, site.work_dlq, "dlq.fragile", label)

    listed = site.client.get("/api/dead-letters").json()
    cli_listed = _cli_json(dlq_cli, "list", "--json")
    # The age moves with the clock; everything else is the same document.
    for doc in (listed, cli_listed):
        for row in doc["dlqs"]:
            row.pop("oldest_age_s")
    assert listed == cli_listed

    shown = site.client.get("/api/dead-letters/work").json()
    cli_shown = _cli_json(dlq_cli, "show", "work", "--json", "--limit", str(SAMPLE_SIZE))
    for key in ("queue", "dlq", "source", "depth", "scanned", "limited"):
        assert shown[key] == cli_shown[key], key
    # receive_count grows with every peek (the console's and the CLI's own).
    assert [{k: j[k] for k in _STABLE} for j in shown["jobs"]] == [
        {k: j[k] for k in _STABLE} for j in cli_shown["jobs"]
    ]
    assert shown["groups"][0]["count"] == 3


def test_the_pools_twin_holds_what_workers_ls_prints(site: Site) -> None:
    twin = site.client.get("/api/pools").json()
    cli = _cli_json(workers_cli.app, "ls", "--json")
    assert twin["backend"] == cli["backend"] == "local"
    assert twin["pools"] == cli["pools"]
    assert [d["pool"] for d in twin["recommendations"]] == ["main"]
    assert twin["decisions"] == []  # no autoscaler ran here
    # The page polls each pool's numbers and nodes (a scale shows without a reload).
    fragment = site.client.get("/fragments/pools/main").text
    assert re.search(r'data-testid="pool-desired">1<', fragment)
    assert re.search(r'data-testid="pool-running">0<', fragment)
    assert site.client.get("/fragments/pools/nope").status_code == 404


def test_redrive_from_the_page_moves_exactly_the_selected_jobs(site: Site) -> None:
    jobs = [dead_letter(site.sqs, site.work_dlq, "dlq.fragile", label) for label in "xyz"]
    page = site.client.get("/dead-letters/work").text
    rows = re.findall(r'name="job_id" value="([^"]+)" data-action', page)
    assert len(rows) == 3
    token = site.csrf("/dead-letters/work")
    assert set(rows) == {job.id for job in jobs}  # the checkboxes carry the job ids
    chosen = [jobs[0].id, jobs[2].id]

    preview = site.client.post(
        "/dead-letters/work/redrive/preview", data={"csrf_token": token, "job_id": chosen}
    )
    assert preview.status_code == 200
    assert 'data-testid="redrive-preview"' in preview.text
    previewed = set(re.findall(r'data-testid="preview-job" data-job-id="([^"]+)"', preview.text))
    assert previewed == {jobs[0].id, jobs[2].id}
    assert visible_in_flight(site.work_dlq) == (3, 0)  # a dry run moves nothing

    message_ids = re.findall(r'name="message_id" value="([^"]+)"', preview.text)
    started = site.client.post(
        "/dead-letters/work/redrive",
        data={"csrf_token": token, "message_id": message_ids},
        follow_redirects=False,
    )
    assert started.status_code == 303
    task_path = started.headers["location"]
    task_id = task_path.rsplit("/", 1)[-1]

    def done() -> str | None:
        fragment = site.client.get(f"/fragments/redrive/{task_id}").text
        found = re.search(r'data-testid="redrive-done">([^<]+)<', fragment)
        return found.group(1) if found else None

    assert eventually(done, timeout_s=30, what="the redrive to finish").startswith("moved 2 of 2")
    assert 'data-testid="redrive-progress"' in site.client.get(task_path).text
    assert visible_in_flight(site.work_dlq) == (1, 0)
    assert visible_in_flight(site.work) == (2, 0)
    assert site.client.get(f"/api{task_path}").json()["moved"] == 2


def test_delete_and_export_from_the_page(site: Site) -> None:
    keep = dead_letter(site.sqs, site.work_dlq, "dlq.fragile", "keep")
    gone = dead_letter(site.sqs, site.work_dlq, "dlq.broken", "gone", reason="permanent_error")

    exported = site.client.get("/dead-letters/work/export.jsonl")
    assert exported.status_code == 200
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert {line["job_id"] for line in lines} == {keep.id, gone.id}
    only = site.client.get("/dead-letters/work/export.jsonl", params={"type": "dlq.broken"})
    assert [json.loads(line)["job_id"] for line in only.text.splitlines()] == [gone.id]
    both = site.client.get("/dead-letters/work/export.jsonl", params={"type": "dlq.b*, dlq.f*"})
    assert len(both.text.splitlines()) == 2

    token = site.csrf("/dead-letters/work")
    preview = site.client.post(
        "/dead-letters/work/delete/preview",
        data={"csrf_token": token, "type": "dlq.broken", "error": "", "since": ""},
    )
    assert 'data-testid="delete-preview"' in preview.text
    message_ids = re.findall(r'name="message_id" value="([^"]+)"', preview.text)
    assert len(message_ids) == 1
    deleted = site.client.post(
        "/dead-letters/work/delete", data={"csrf_token": token, "message_id": message_ids}
    )
    assert "deleted 1 of 1 jobs" in deleted.text
    assert visible_in_flight(site.work_dlq) == (1, 0)


def test_a_dead_jobs_page_shows_its_failure_record(site: Site) -> None:
    job = dead_letter(site.sqs, site.work_dlq, "dlq.fragile", "shown")
    page = site.client.get(f"/dead-letters/work/jobs/{job.id}")
    assert page.status_code == 200
    reason = re.search(r'data-testid="failure-reason">([^<]+)<', page.text)
    assert reason is not None
    assert "attempts_exhausted" in reason.group(1)
    assert "cannot process shown" in reason.group(1)
    assert 'data-testid="traceback"' in page.text
    assert "&#34;label&#34;: &#34;shown&#34;" in page.text or '"label": "shown"' in page.text
    twin = site.client.get(f"/api/dead-letters/work/jobs/{job.id}").json()
    assert twin["job_id"] == job.id
    assert twin["reason"] == "attempts_exhausted"
    missing = site.client.get("/dead-letters/work/jobs/no-such-job")
    assert missing.status_code == 404
    assert 'data-testid="error-banner"' in missing.text


def test_the_pools_page_lists_the_autoscalers_recent_decisions(site: Site) -> None:
    backend = backend_for("local", site.topology)
    autoscaler = Autoscaler(site.topology, backend)  # keeps its journal in the state dir
    autoscaler.tick()
    autoscaler.tick()  # the same hold again: listed once
    page = site.client.get("/pools")
    assert page.status_code == 200
    assert page.text.count('data-testid="decision"') == 1
    twin = site.client.get("/api/pools").json()
    (decision,) = twin["decisions"]
    assert (decision["pool"], decision["action"], decision["reason"]) == (
        "main",
        "hold",
        "at the recommendation",
    )
    assert decision["backlog"] == 0


def test_the_overview_puts_a_growing_dlq_at_the_top(site: Site) -> None:
    sampler = site.client.app.state.console.sampler  # type: ignore[attr-defined]
    assert sampler.sample_once() is not None
    dead_letter(site.sqs, site.work_dlq, "dlq.fragile", "new")
    assert sampler.sample_once() is not None

    page = site.client.get("/")
    assert page.status_code == 200
    attention = re.search(r'data-testid="attention"(.*?)</section>', page.text, re.S)
    assert attention is not None
    assert "the DLQ of work grew from 0 to 1" in attention.group(1)
    assert "<svg" in page.text  # the queue's chart, from the two samples
    twin = site.client.get("/api/overview").json()
    assert twin["attention"][0]["kind"] == "dlq_growing"
    work = next(q for q in twin["queues"] if q["queue"] == "work")
    assert work["dlq_depth"] == 1
    # No worker node runs here: the last hour's outcomes are unknown, not zero.
    assert twin["last_hour"]["known"] is False
    assert "unknown: no worker node" in page.text


def test_the_overview_twin_holds_what_status_prints(site: Site) -> None:
    dead_letter(site.sqs, site.work_dlq, "dlq.fragile", "counted")
    status_app = typer.Typer()
    status_cli.register(status_app)
    status_app.command("noop")(lambda: None)  # a group, so `status` is a subcommand
    cli = _cli_json(status_app, "status", "--json")
    twin = site.client.get("/api/overview").json()

    def stable(doc: dict[str, Any]) -> dict[str, Any]:
        # Ages move with the clock; the CLI's DLQ peek reads up to 1,000, the console's 100.
        drop = ("oldest_age_s", "dlq_oldest_age_s")
        return {
            "queues": [{k: v for k, v in q.items() if k not in drop} for q in doc["queues"]],
            "pools": [{k: v for k, v in p.items() if k != "nodes"} for p in doc["pools"]],
            "backend": doc["backend"],
        }

    assert stable(twin) == stable(cli)
    assert {"attention", "last_hour", "target"} <= set(twin)
