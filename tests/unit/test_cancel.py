"""Cancellation in process: the ledger's conditions, the workers' hook, the API's answers.

DynamoDB, SNS and SQS are moto's in-process mock. The timer store is the delayed-jobs
work's (:mod:`infra.timers`); here it is replaced by a small subclass that keeps its
timers in a dict, so the API's delayed path is exercised before that work is merged.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from infra import aws
from infra.envelope import encode, make_envelope
from infra.errors import AwsError
from infra.ledger import Ledger, QueuedJob, RunUpdate, ledger_for, overall_state
from infra.timers import Timer, TimerCancel, TimerStore
from infra.topology import Topology, parse_topology
from producers import cancel as cancel_module
from producers.app import create_app
from producers.auth import ApiKey, hash_key
from tests.unit.test_api import provision
from tests.unit.test_lambda_adapter import lambda_record
from workers.hooks import Inline, Job, LedgerHook
from workers.idempotency import LAMBDA_ENVIRONMENT_VARIABLE, job_hooks
from workers.lambda_adapter import LambdaAdapter
from workers.outcome import Outcome
from workers.runner import JobRunner

YAML = """
version: 1
project: cx
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
  audit:
    subscriptions: [{topic: jobs, job_types: [test.record]}]
job_types:
  test.record: {topic: jobs, payload: "tests.jobs:Note", handler: "tests.jobs:record", ledger: true}
  test.plain: {topic: jobs, payload: "tests.jobs:Note", handler: "tests.jobs:record"}
pools:
  main: {queues: [work, audit]}
"""
ALICE, BOB, ROOT = (f"cvy_{name}-key-for-cancel-tests-0123456789abcdef" for name in "abr")
KEYS = [
    ApiKey("alice", hash_key(ALICE)),
    ApiKey("bob", hash_key(BOB)),
    ApiKey("root", hash_key(ROOT), scopes=frozenset({"admin"})),
]
NOTE = {"label": "x"}


@pytest.fixture
def topology() -> Topology:
    return parse_topology(YAML, environment="unit")


@pytest.fixture
def ledger(topology: Topology, mocked_aws: None) -> Ledger:
    provision(topology)
    found = ledger_for(topology)
    assert found is not None
    return found


def _run(state: str, queue: str = "work", attempt: int = 1, redrives: int = 0) -> RunUpdate:
    return RunUpdate(queue, "j1", "test.record", state, attempt, redrives=redrives)  # type: ignore[arg-type]


# -- the ledger -------------------------------------------------------------------------


def test_cancel_marks_only_queues_where_the_job_has_not_started(ledger: Ledger) -> None:
    ledger.record_queued([QueuedJob("j1", "test.record", ["work", "audit"], key_name="alice")])
    assert ledger.record_start(_run("running", "audit")) == "recorded"
    assert ledger.cancel("j1", "test.record", ["work", "audit"], by="alice") == {
        "work": ("cancelled", True),
        "audit": ("running", False),
    }
    record = ledger.get("j1")
    assert record is not None
    assert {q: s.state for q, s in record.queues.items()} == {
        "audit": "running",
        "work": "cancelled",
    }
    assert record.state == "running"  # the least advanced queue
    assert record.queues["work"].finished_at is not None
    # Again: nothing changes, and the answer says it was cancelled before.
    again = ledger.cancel("j1", "test.record", ["work", "audit"])
    assert again == {"work": ("cancelled", False), "audit": ("running", False)}


def test_a_cancelled_queue_refuses_every_later_worker_write(ledger: Ledger) -> None:
    ledger.cancel("j1", "test.record", ["work"])
    assert ledger.record_start(_run("running")) == "cancelled"
    assert ledger.record_start(_run("running", attempt=2)) == "cancelled"
    assert ledger.record_start(_run("running", redrives=3)) == "cancelled"  # a redrive too
    assert not ledger.record_run(_run("succeeded"))
    record = ledger.get("j1")
    assert record is not None
    assert (record.state, record.queues["work"].attempt) == ("cancelled", 0)


def test_a_retrying_job_is_cancelled_before_its_next_attempt(ledger: Ledger) -> None:
    assert ledger.record_start(_run("running")) == "recorded"
    assert ledger.record_run(_run("retrying"))
    assert ledger.cancel("j1", "test.record", ["work"]) == {"work": ("cancelled", True)}
    assert ledger.record_start(_run("running", attempt=2)) == "cancelled"
    record = ledger.get("j1")
    assert record is not None
    assert (record.state, record.queues["work"].attempt) == ("cancelled", 1)


def test_finished_jobs_and_stale_starts_are_not_cancelled(ledger: Ledger) -> None:
    ledger.record_start(_run("running"))
    ledger.record_run(_run("succeeded"))
    assert ledger.cancel("j1", "test.record", ["work"]) == {"work": ("succeeded", False)}
    # A duplicate delivery after the success: ignored by the ledger, and it runs.
    assert ledger.record_start(_run("running")) == "ignored"


def test_record_start_fails_open_when_the_ledger_is_down(mocked_aws: None) -> None:
    missing = Ledger("no-such-table", job_types=["test.record"], queues=["work"], retention_s=60)
    with capture_logs() as logs:
        assert missing.record_start(_run("running")) == "failed"
    assert [e["event"] for e in logs] == ["ledger.record_failed"]


@pytest.mark.parametrize(
    ("states", "overall"),
    [
        (["cancelled"], "cancelled"),
        (["cancelled", "succeeded"], "cancelled"),
        (["cancelled", "dead-lettered"], "dead-lettered"),
        (["cancelled", "running"], "running"),
        (["cancelled", "queued"], "queued"),
    ],
)
def test_overall_state_with_cancelled_queues(states: list[str], overall: str) -> None:
    assert overall_state(states) == overall


# -- the workers ------------------------------------------------------------------------


def _message(body: str) -> dict[str, Any]:
    return {"MessageId": "m-1", "Body": body, "Attributes": {"ApproximateReceiveCount": "1"}}


def test_a_worker_deletes_a_cancelled_job_without_running_it(
    topology: Topology, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    runner = JobRunner(topology, ["work"], hooks=job_hooks(topology, ["work"]))
    cancelled = make_envelope("test.record", NOTE)
    kept = make_envelope("test.record", NOTE)
    ledger.cancel(cancelled.id, "test.record", ["work"])
    with capture_logs() as logs:
        outcome = runner.run(_message(encode(cancelled)), "work")
    assert (outcome.kind, outcome.extra) == ("succeeded", {"cancelled": True})  # deleted
    assert not (tmp_path / f"{cancelled.id}.jsonl").exists()  # the handler never ran
    assert "job.cancelled" in [e["event"] for e in logs]
    assert "job.started" not in [e["event"] for e in logs]
    record = ledger.get(cancelled.id)
    assert record is not None
    assert record.state == "cancelled"
    # A job that was not cancelled runs as always.
    assert runner.run(_message(encode(kept)), "work").kind == "succeeded"
    assert (tmp_path / f"{kept.id}.jsonl").exists()


def test_the_lambda_adapter_deletes_a_cancelled_job_without_running_it(
    topology: Topology,
    ledger: Ledger,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    monkeypatch.setenv(LAMBDA_ENVIRONMENT_VARIABLE, "cx-work")  # ledger writes inline
    adapter = LambdaAdapter(topology)
    cancelled = make_envelope("test.record", NOTE)
    ledger.cancel(cancelled.id, "test.record", ["work"])
    arn = f"arn:aws:sqs:us-east-1:123456789012:{topology.queue_name('work')}"
    record = lambda_record("m-1", arn=arn, body=encode(cancelled))
    response = adapter.handle({"Records": [record]})
    assert response == {"batchItemFailures": []}  # Lambda deletes it
    assert not (tmp_path / f"{cancelled.id}.jsonl").exists()


class Writes:
    def __init__(self) -> None:
        self.states: list[str] = []

    def __call__(self, update: RunUpdate) -> bool:
        self.states.append(update.state)
        return True


def test_the_hook_runs_jobs_when_the_ledger_is_down_and_then_stops_asking(
    mocked_aws: None,
) -> None:
    missing = Ledger("no-such-table", job_types=["test.record"], queues=["work"], retention_s=60)
    writes = Writes()
    hook = LedgerHook(missing, submitter=Inline(writes), check_cancelled=True)
    ran: list[int] = []

    def proceed() -> Outcome:
        ran.append(1)
        return Outcome("succeeded", "work", 1, "j1", "test.record")

    job = Job("work", 1, "j1", "test.record", None, None)
    hook(job, proceed)  # `running` failed on the job's path: the job ran anyway
    assert (ran, writes.states) == ([1], ["succeeded"])
    hook(job, proceed)  # paused: `running` goes to the background writer again
    assert (ran, writes.states) == ([1, 1], ["succeeded", "running", "succeeded"])


def test_job_hooks_check_for_cancellation_and_types_without_a_ledger_are_untouched(
    topology: Topology, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [hook] = [h for h in job_hooks(topology, ["work"]) if isinstance(h, LedgerHook)]
    assert hook.check_cancelled
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    runner = JobRunner(
        topology, ["work"], hooks=job_hooks(topology, ["work"]), rng=random.Random(1)
    )
    plain = make_envelope("test.plain", NOTE)
    ledger.cancel(plain.id, "test.plain", ["work"])  # not a recorded type: never consulted
    assert runner.run(_message(encode(plain)), "work").extra == {}
    assert (tmp_path / f"{plain.id}.jsonl").exists()


# -- the API ----------------------------------------------------------------------------


class DictTimers(TimerStore):
    """Timers in a dict: the contract of infra.timers, for the API's delayed path."""

    # Class attributes: the app builds its own instance (reset per test by the fixture).
    waiting: ClassVar[dict[str, Timer]] = {}
    answer: ClassVar[TimerCancel | None] = None  # force an answer ("publishing")
    fail: ClassVar[bool] = False

    def get(self, job_id: str) -> Timer | None:
        if self.fail:
            raise AwsError("the timer store is unreachable")
        return self.waiting.get(job_id)

    def cancel(self, job_id: str) -> TimerCancel:
        if self.answer is not None:
            return self.answer
        return "cancelled" if self.waiting.pop(job_id, None) else "not_found"


@pytest.fixture
def timers(monkeypatch: pytest.MonkeyPatch) -> type[DictTimers]:
    monkeypatch.setattr(DictTimers, "waiting", {})
    monkeypatch.setattr(DictTimers, "answer", None)
    monkeypatch.setattr(DictTimers, "fail", False)
    monkeypatch.setattr(cancel_module, "TimerStore", DictTimers)
    return DictTimers


@pytest.fixture
def api(topology: Topology, ledger: Ledger, timers: type[DictTimers]) -> TestClient:
    return TestClient(create_app(topology, keys=KEYS))


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _enqueue(api: TestClient, key: str = ALICE, job_type: str = "test.record") -> str:
    accepted = api.post(f"/v1/jobs/{job_type}", json=NOTE, headers=_auth(key))
    assert accepted.status_code == 202, accepted.text
    job_id: str = accepted.json()["id"]
    return job_id


def test_cancel_a_queued_job_only_with_its_key_or_an_admin_key(api: TestClient) -> None:
    mine, theirs = _enqueue(api), _enqueue(api)
    assert api.delete(f"/v1/jobs/{mine}").status_code == 401
    unknown = api.delete("/v1/jobs/no-such-job", headers=_auth(BOB))
    foreign = api.delete(f"/v1/jobs/{mine}", headers=_auth(BOB))
    assert unknown.status_code == foreign.status_code == 404
    # Another key's job reads exactly as an unknown id: ids cannot be probed.
    assert foreign.json()["detail"] == unknown.json()["detail"].replace("no-such-job", mine)
    done = api.delete(f"/v1/jobs/{mine}", headers=_auth(ALICE))
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "cancelled"
    assert done.json()["queues"] == {"audit": "cancelled", "work": "cancelled"}
    assert api.get(f"/v1/jobs/{mine}", headers=_auth(ALICE)).json()["state"] == "cancelled"
    by_admin = api.delete(f"/v1/jobs/{theirs}", headers=_auth(ROOT))
    assert (by_admin.status_code, by_admin.json()["state"]) == (200, "cancelled")
    # Twice: the same answer (DELETE is idempotent).
    again = api.delete(f"/v1/jobs/{mine}", headers=_auth(ALICE))
    assert (again.status_code, again.json()) == (200, done.json())


def test_a_started_job_is_409_with_its_state_and_a_partial_fan_out_cancels_the_rest(
    api: TestClient, ledger: Ledger
) -> None:
    running, partial = _enqueue(api), _enqueue(api)
    for queue in ("work", "audit"):
        ledger.record_start(RunUpdate(queue, running, "test.record", "running", 1))
    refused = api.delete(f"/v1/jobs/{running}", headers=_auth(ALICE))
    assert refused.status_code == 409
    assert refused.json()["state"] == "running"
    assert refused.json()["queues"] == {"audit": "running", "work": "running"}
    assert "not interrupted" in refused.json()["detail"]

    ledger.record_start(RunUpdate("audit", partial, "test.record", "running", 1))
    ledger.record_run(RunUpdate("audit", partial, "test.record", "succeeded", 1))
    answer = api.delete(f"/v1/jobs/{partial}", headers=_auth(ALICE))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["queues"] == {"audit": "succeeded", "work": "cancelled"}
    assert body["state"] == "cancelled"  # every queue finished, one cancelled
    assert "not on audit (succeeded)" in body["detail"]


def test_a_delayed_job_is_removed_from_the_timer_store(
    api: TestClient, ledger: Ledger, timers: type[DictTimers]
) -> None:
    envelope = make_envelope("test.record", NOTE)
    timers.waiting[envelope.id] = Timer(
        envelope.id, "test.record", envelope.time, encode(envelope), key_name="alice"
    )
    foreign = api.delete(f"/v1/jobs/{envelope.id}", headers=_auth(BOB))
    assert foreign.status_code == 404
    assert envelope.id in timers.waiting
    answer = api.delete(f"/v1/jobs/{envelope.id}", headers=_auth(ALICE))
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "cancelled"
    assert "never be published" in answer.json()["detail"]
    assert envelope.id not in timers.waiting
    # The ledger says so too, and a delivery that somehow happened would be refused.
    record = ledger.get(envelope.id)
    assert record is not None
    assert record.state == "cancelled"
    again = api.delete(f"/v1/jobs/{envelope.id}", headers=_auth(ALICE))
    assert (again.status_code, again.json()["state"]) == (200, "cancelled")


def test_a_delayed_job_being_published_is_cancelled_on_its_queues_before_it_arrives(
    api: TestClient, ledger: Ledger, timers: type[DictTimers]
) -> None:
    recorded = make_envelope("test.record", NOTE)
    plain = make_envelope("test.plain", NOTE)
    for envelope in (recorded, plain):
        timers.waiting[envelope.id] = Timer(
            envelope.id, envelope.type, envelope.time, encode(envelope), key_name="alice"
        )
    timers.answer = "publishing"
    answer = api.delete(f"/v1/jobs/{recorded.id}", headers=_auth(ALICE))
    assert (answer.status_code, answer.json()["state"]) == (200, "cancelled")
    assert ledger.record_start(RunUpdate("work", recorded.id, "test.record", "running", 1)) == (
        "cancelled"
    )
    # Without the ledger, a published job cannot be stopped: 409 that says why.
    refused = api.delete(f"/v1/jobs/{plain.id}", headers=_auth(ALICE))
    assert refused.status_code == 409
    assert refused.json()["state"] is None
    assert "test.plain does not set ledger: true" in refused.json()["detail"]


def test_stores_that_fail_are_503_and_a_project_without_a_ledger_is_409(
    topology: Topology, ledger: Ledger, timers: type[DictTimers]
) -> None:
    api = TestClient(create_app(topology, keys=KEYS))
    timers.fail = True
    down = api.delete("/v1/jobs/some-id", headers=_auth(ALICE))
    assert (down.status_code, down.headers["Retry-After"]) == (503, "5")
    assert "timer store" in down.json()["detail"]
    aws.client("dynamodb").delete_table(TableName=topology.resource_name("jobs"))
    gone = api.delete("/v1/jobs/some-id", headers=_auth(ALICE))
    assert gone.status_code == 503
    assert "conveyor infra apply" in gone.json()["detail"]
    assert topology.resource_name("jobs") not in gone.text  # no AWS name in a body

    timers.fail = False
    no_ledger = parse_topology(YAML.replace("ledger: true", "ledger: false"), environment="unit")
    refused = TestClient(create_app(no_ledger, keys=KEYS)).delete(
        "/v1/jobs/some-id", headers=_auth(ALICE)
    )
    assert refused.status_code == 409
    assert "no job type set ledger: true" in refused.json()["detail"]


def test_an_impossible_id_is_422_and_the_route_is_documented(api: TestClient) -> None:
    assert api.delete(f"/v1/jobs/{'x' * 129}", headers=_auth(ALICE)).status_code == 422
    schema = api.get("/openapi.json").json()
    operation = schema["paths"]["/v1/jobs/{job_id}"]["delete"]
    assert operation["operationId"] == "cancel_job"
    assert {"200", "404", "409", "503"} <= set(operation["responses"])
    assert json.dumps(operation)  # serialisable
