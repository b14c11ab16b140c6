"""The job ledger's state rules, its batching, and its failures (moto in process: unit only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from infra import aws
from infra.failure import Failure
from infra.ledger import (
    Ledger,
    LedgerUnavailableError,
    QueuedJob,
    RunUpdate,
    ledger_for,
    overall_state,
)
from infra.topology import parse_topology
from workers.hooks import BackgroundWriter, Inline, Job, LedgerHook
from workers.idempotency import LAMBDA_ENVIRONMENT_VARIABLE, job_hooks
from workers.outcome import Outcome

TABLE = "shop-unit-jobs"
YAML = """
version: 1
project: shop
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
  audit:
    subscriptions: [{topic: jobs}]
job_types:
  mail.send: {topic: jobs, payload: "m:P", handler: "m:h", ledger: true}
  mail.log: {topic: jobs, payload: "m:P", handler: "m:h"}
"""


def _create_table() -> None:
    aws.client("dynamodb").create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def ledger(mocked_aws: None) -> Ledger:
    _create_table()
    found = ledger_for(parse_topology(YAML, environment="unit"))
    assert found is not None
    return found


def _run(state: str, attempt: int = 1, **fields: object) -> RunUpdate:
    return RunUpdate(
        queue=str(fields.pop("queue", "work")),
        job_id="j1",
        job_type="mail.send",
        state=state,  # type: ignore[arg-type]
        attempt=attempt,
        **fields,  # type: ignore[arg-type]
    )


def test_ledger_for_only_when_a_job_type_records_status() -> None:
    found = ledger_for(parse_topology(YAML, environment="unit"))
    assert found is not None
    assert (found.table_name, sorted(found.job_types)) == (TABLE, ["mail.send"])
    assert found.queues == ("audit", "work")
    off = parse_topology(YAML.replace("ledger: true", "ledger: false"), environment="unit")
    assert ledger_for(off) is None


def test_queued_then_per_queue_walk_to_succeeded(ledger: Ledger) -> None:
    ledger.record_queued([QueuedJob("j1", "mail.send", ["audit", "work"], "a" * 32)])
    record = ledger.get("j1")
    assert record is not None
    assert (record.type, record.state, record.trace_id) == ("mail.send", "queued", "a" * 32)
    assert record.queued_at is not None
    assert {q: s.state for q, s in record.queues.items()} == {"audit": "queued", "work": "queued"}

    next_at = datetime(2030, 1, 1, tzinfo=UTC)
    steps = [
        _run("running", 1),
        _run("retrying", 1, next_attempt_at=next_at, error="TimeoutError: slow"),
        _run("running", 2),
        _run("succeeded", 2),
    ]
    seen = []
    for update in steps:
        assert ledger.record_run(update)
        record = ledger.get("j1")
        assert record is not None
        work = record.queues["work"]
        seen.append((work.state, work.attempt, record.state))
        if work.state == "retrying":
            assert work.next_attempt_at == next_at
            assert work.error == "TimeoutError: slow"
    assert seen == [
        ("running", 1, "queued"),  # audit has not started: the job as a whole is queued
        ("retrying", 1, "queued"),
        ("running", 2, "queued"),
        ("succeeded", 2, "queued"),
    ]
    assert record.queues["work"].next_attempt_at is None  # cleared once it ran again
    assert record.queues["work"].error is None
    assert record.queues["work"].finished_at is not None
    ledger.record_run(_run("dead-lettered", 1, queue="audit", reason="permanent_error"))
    final = ledger.get("j1")
    assert final is not None
    assert final.state == "dead-lettered"
    assert final.queues["audit"].reason == "permanent_error"


def test_late_and_duplicate_writes_never_move_a_job_backwards(ledger: Ledger) -> None:
    assert ledger.record_run(_run("running", 2))
    assert not ledger.record_run(_run("retrying", 1))  # an older attempt's news
    assert ledger.record_run(_run("succeeded", 2))
    assert not ledger.record_run(_run("running", 2))  # late
    # A duplicate delivery after the success (at least once) keeps it succeeded.
    assert not ledger.record_run(_run("running", 3))
    assert not ledger.record_run(_run("dead-lettered", 3, reason="attempts_exhausted"))
    record = ledger.get("j1")
    assert record is not None
    assert (record.queues["work"].state, record.queues["work"].attempt) == ("succeeded", 2)


def test_a_redrive_starts_a_new_history(ledger: Ledger) -> None:
    ledger.record_run(_run("dead-lettered", 5, reason="attempts_exhausted"))
    assert ledger.record_run(_run("running", 1, redrives=1))
    assert not ledger.record_run(_run("succeeded", 5))  # the first life's late news
    record = ledger.get("j1")
    assert record is not None
    work = record.queues["work"]
    assert (work.state, work.attempt, work.redrives, work.reason) == ("running", 1, 1, None)


def test_a_worker_ahead_of_the_producer_is_not_overwritten(ledger: Ledger) -> None:
    # The worker can start the job before the producer's batch write lands.
    ledger.record_run(_run("succeeded", 1))
    ledger.record_queued([QueuedJob("j1", "mail.send", ["work"], None)])
    record = ledger.get("j1")
    assert record is not None
    assert record.state == "succeeded"
    assert record.queued_at is not None


def test_only_recorded_job_types_and_unknown_ids(ledger: Ledger) -> None:
    ledger.record_queued([QueuedJob("j2", "mail.log", ["work"], None)])
    assert not ledger.record_run(RunUpdate("work", "j2", "mail.log", "running", 1))
    assert ledger.get("j2") is None
    assert ledger.get("nope") is None
    assert ledger.get("x" * 500) is None


def test_record_queued_writes_25_per_call(ledger: Ledger) -> None:
    before = aws.request_counts().get("dynamodb.BatchWriteItem", 0)
    jobs = [QueuedJob(f"j{i}", "mail.send", ["work"], None) for i in range(60)]
    ledger.record_queued([*jobs, jobs[0]])  # a repeated id must not fail the batch
    assert aws.request_counts()["dynamodb.BatchWriteItem"] - before == 3
    assert all(ledger.get(f"j{i}") is not None for i in (0, 24, 25, 59))


def test_ledger_failures_never_raise_on_writes_but_do_on_reads(mocked_aws: None) -> None:
    ledger = Ledger("missing-table", job_types=["mail.send"], queues=["work"], retention_s=60)
    with capture_logs() as events:
        ledger.record_queued([QueuedJob("j1", "mail.send", ["work"], None)])
        assert not ledger.record_run(_run("running"))
    assert [(e["event"], e["log_level"]) for e in events] == [
        ("ledger.record_failed", "warning"),
        ("ledger.record_failed", "warning"),
    ]
    with pytest.raises(LedgerUnavailableError, match="does not exist: run `conveyor infra apply`"):
        ledger.get("j1")


@pytest.mark.parametrize(
    ("states", "overall"),
    [
        ([], "queued"),
        (["succeeded"], "succeeded"),
        (["succeeded", "queued"], "queued"),
        (["retrying", "running"], "running"),
        (["succeeded", "retrying"], "retrying"),
        (["succeeded", "dead-lettered"], "dead-lettered"),
    ],
)
def test_overall_state(states: list[str], overall: str) -> None:
    assert overall_state(states) == overall


# -- the workers' hook -----------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.updates: list[RunUpdate] = []

    def __call__(self, update: RunUpdate) -> bool:
        self.updates.append(update)
        return True


def _hook(recorder: Recorder) -> LedgerHook:
    ledger = Ledger(TABLE, job_types=["mail.send"], queues=["work"], retention_s=60)
    return LedgerHook(ledger, submitter=Inline(recorder))


def _outcome(kind: str, **fields: object) -> Outcome:
    return Outcome(kind, "work", 2, "j1", "mail.send", **fields)  # type: ignore[arg-type]


def test_the_hook_records_running_then_the_runners_outcome() -> None:
    recorder = Recorder()
    hook = _hook(recorder)
    job = Job("work", 2, "j1", "mail.send", "t" * 32, None, redrives=1)
    retry = _outcome("retry", delay_s=30, error_type="ValueError", error="bad")
    assert hook(job, lambda: retry) is retry
    failure = Failure(
        reason="attempts_exhausted",
        error_type="ValueError",
        error_message="bad",
        attempts=2,
        max_attempts=2,
        queue="work",
        worker="w",
        first_attempt_at=None,
        last_failure_at="2026-12-01T00:00:00+00:00",
        job_id="j1",
        job_type="mail.send",
        traceback="",
    )
    hook(job, lambda: _outcome("dead_letter", failure=failure))
    hook(job, lambda: _outcome("succeeded"))
    states = [(u.state, u.attempt, u.redrives) for u in recorder.updates]
    assert states == [
        ("running", 2, 1),
        ("retrying", 2, 1),
        ("running", 2, 1),
        ("dead-lettered", 2, 1),
        ("running", 2, 1),
        ("succeeded", 2, 1),
    ]
    retrying = recorder.updates[1]
    assert retrying.next_attempt_at is not None
    assert retrying.at is not None
    assert retrying.next_attempt_at - retrying.at >= timedelta(seconds=29)
    assert retrying.error == "ValueError: bad"
    assert recorder.updates[3].reason == "attempts_exhausted"


def test_the_hook_skips_unrecorded_types_and_invalid_envelopes() -> None:
    recorder = Recorder()
    hook = _hook(recorder)
    hook(Job("work", 1, "j1", "mail.log", None, None), lambda: _outcome("succeeded"))
    hook(Job("work", 1, None, None, None, None), lambda: _outcome("dead_letter"))
    assert recorder.updates == []


def test_the_background_writer_writes_in_order_and_survives_a_crash() -> None:
    written: list[str] = []

    def write(update: RunUpdate) -> None:
        if update.state == "retrying":
            raise RuntimeError("boom")
        written.append(update.state)

    writer = BackgroundWriter(write)
    for state in ("running", "retrying", "running", "succeeded"):
        writer.submit(_run(state))
    assert writer.flush(timeout_s=5)
    assert written == ["running", "running", "succeeded"]


def test_job_hooks_add_the_ledger_for_recorded_queues_inline_on_lambda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topology = parse_topology(YAML, environment="unit")
    monkeypatch.delenv(LAMBDA_ENVIRONMENT_VARIABLE, raising=False)
    hooks = job_hooks(topology, ["work"])
    [ledger_hook] = [h for h in hooks if isinstance(h, LedgerHook)]
    assert isinstance(ledger_hook.submitter, BackgroundWriter)
    monkeypatch.setenv(LAMBDA_ENVIRONMENT_VARIABLE, "conveyor-work")
    [ledger_hook] = [h for h in job_hooks(topology, ["work"]) if isinstance(h, LedgerHook)]
    assert isinstance(ledger_hook.submitter, Inline)  # Lambda freezes background threads
    off = parse_topology(YAML.replace("ledger: true", "ledger: false"), environment="unit")
    assert not [h for h in job_hooks(off, ["work"]) if isinstance(h, LedgerHook)]


def test_an_unreadable_record_is_unavailable_not_a_crash(ledger: Ledger) -> None:
    item = {"pk": {"S": "run#work#j9"}, "job_type": {"S": "mail.send"}, "state": {"S": "lost"}}
    aws.client("dynamodb").put_item(TableName=TABLE, Item=item)
    with pytest.raises(LedgerUnavailableError, match="unreadable record for job 'j9'"):
        ledger.get("j9")
