"""``jobs show`` never shows a job finished before it was queued.

The API records a job as queued after SNS accepted it; a fast worker may have run it
by then. ``queued_at`` is when the API accepted the job (its envelope's ``time``),
and a worker whose clock lags never records a time before SQS accepted the message.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from infra import aws
from infra.envelope import make_envelope
from infra.ledger import Ledger, QueuedJob, ledger_for
from infra.topology import parse_topology
from workers.hooks import Inline, Job, LedgerHook
from workers.outcome import Outcome

YAML = """
version: 1
project: shop
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
job_types:
  mail.send: {topic: jobs, payload: "m:P", handler: "m:h", ledger: true}
"""


def succeeded(job: Job) -> Outcome:
    return Outcome("succeeded", job.queue, job.attempt, job.job_id, job.job_type)


@pytest.fixture
def ledger(mocked_aws: None) -> Ledger:
    aws.client("dynamodb").create_table(
        TableName="shop-order-jobs",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    found = ledger_for(parse_topology(YAML, environment="order"))
    assert found is not None
    return found


def test_a_job_finished_before_the_api_recorded_it_is_still_queued_first(
    ledger: Ledger,
) -> None:
    envelope = make_envelope("mail.send", {"to": "a@example.com"})
    job = Job("work", 1, envelope.id, "mail.send", None, time.time())
    hook = LedgerHook(ledger, submitter=Inline(ledger.record_run))
    hook(job, lambda: succeeded(job))  # the worker was quicker than the API's write
    ledger.record_queued(
        [QueuedJob(envelope.id, "mail.send", ["work"], None, queued_at=envelope.time)]
    )
    record = ledger.get(envelope.id)
    assert record is not None
    run = record.queues["work"]
    assert record.queued_at is not None
    assert run.finished_at is not None
    assert record.queued_at <= run.started_at <= run.finished_at  # type: ignore[operator]


def test_a_worker_clock_behind_aws_does_not_record_times_before_the_send(
    ledger: Ledger,
) -> None:
    sent = datetime.now(UTC) + timedelta(seconds=30)  # SQS's clock is 30 s ahead of ours
    job = Job("work", 1, "j-late", "mail.send", None, sent.timestamp())
    LedgerHook(ledger, submitter=Inline(ledger.record_run))(job, lambda: succeeded(job))
    record = ledger.get("j-late")
    assert record is not None
    run = record.queues["work"]
    assert run.started_at is not None
    assert run.started_at >= sent - timedelta(milliseconds=1)
