"""DLQ operations without AWS: selecting jobs, parsing options, stamping redrives, naming queues."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.aws.lookup import Depth
from infra.envelope import decode, encode, make_envelope
from infra.failure import FAILURE_ATTRIBUTE, REDRIVE_COUNT, REDRIVEN_AT, Failure
from infra.limits import SQS_MAX_BATCH_BYTES
from infra.topology import load_topology
from ops.dlq import (
    NATIVE_REDRIVE_REASON,
    DeadJob,
    DlqError,
    DlqSummary,
    JobFilter,
    Pacer,
    TargetQueue,
    parse_rate,
    parse_since,
    render,
    resolve_dlq,
    resolve_target,
    stamp_redrive,
)
from ops.dlq.peek import hold_seconds
from ops.dlq.redrive import chunk_entries, resend_attributes, send_entry
from tests import REPO

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def _message(
    body: str,
    *,
    failure: Failure | None = None,
    message_id: str = "m-1",
    sent_at: datetime = NOW - timedelta(minutes=5),
    extra_attributes: dict[str, Any] | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    attributes = {
        "SentTimestamp": str(int(sent_at.timestamp() * 1000)),
        "ApproximateReceiveCount": "4",
    }
    if group is not None:
        attributes["MessageGroupId"] = group
    message_attributes = dict(extra_attributes or {})
    if failure is not None:
        message_attributes.update(failure.to_attribute())
    return {
        "MessageId": message_id,
        "ReceiptHandle": "r",
        "Body": body,
        "Attributes": attributes,
        "MessageAttributes": message_attributes,
    }


def _job(
    job_type: str = "image.resize",
    *,
    reason: str = "attempts_exhausted",
    error_type: str = "TimeoutError",
    error_message: str = "upstream timed out",
    failed_at: datetime = NOW - timedelta(minutes=10),
    message_id: str = "m-1",
    data: Any = None,
) -> DeadJob:
    envelope = make_envelope(job_type, data if data is not None else {"width_px": 640})
    failure = Failure(
        reason=reason,
        error_type=error_type,
        error_message=error_message,
        attempts=5,
        max_attempts=5,
        queue="images",
        worker="host:1",
        first_attempt_at=(failed_at - timedelta(seconds=30)).isoformat(),
        last_failure_at=failed_at.isoformat(),
        job_id=envelope.id,
        job_type=job_type,
        traceback="".join(f"line {i}\n" for i in range(20)) + f"{error_type}: {error_message}\n",
    )
    return DeadJob.from_message(_message(encode(envelope), failure=failure, message_id=message_id))


# -- option parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("2h", NOW - timedelta(hours=2)),
        ("3d", NOW - timedelta(days=3)),
        ("30", NOW - timedelta(seconds=30)),
        ("2026-11-20T08:30:00Z", datetime(2026, 11, 20, 8, 30, tzinfo=UTC)),
        ("2026-11-20T08:30:00+01:00", datetime(2026, 11, 20, 7, 30, tzinfo=UTC)),
        ("2026-11-20T08:30:00", datetime(2026, 11, 20, 8, 30, tzinfo=UTC)),  # UTC when naive
    ],
)
def test_since_takes_a_duration_or_an_iso_time(value: str, expected: datetime) -> None:
    assert parse_since(value, NOW) == expected


@pytest.mark.parametrize("value", ["yesterday", "-5m", "2h ago", "", "5 parsecs"])
def test_since_refuses_anything_else_with_a_helpful_message(value: str) -> None:
    with pytest.raises(ValueError, match=r"invalid --since .*expected a duration such as 30m"):
        parse_since(value, NOW)


@pytest.mark.parametrize(
    ("value", "per_s"), [("5", 5.0), ("5/s", 5.0), ("0.5/s", 0.5), ("300/m", 5.0), (" 2/S ", 2.0)]
)
def test_rate_is_per_second_or_per_minute(value: str, per_s: float) -> None:
    assert parse_rate(value) == per_s


@pytest.mark.parametrize("value", ["0", "-1/s", "fast", "inf", "nan", "5/h", ""])
def test_rate_must_be_a_positive_number(value: str) -> None:
    with pytest.raises(ValueError, match="invalid --rate"):
        parse_rate(value)


def test_holds_are_whole_seconds_within_sqs_limits() -> None:
    assert (hold_seconds(0.2), hold_seconds(2.5), hold_seconds(10**6)) == (1, 3, 43200)


# -- filters -------------------------------------------------------------------------------


def test_an_empty_filter_matches_everything() -> None:
    garbage = DeadJob.from_message(_message("not json"))
    assert JobFilter().is_empty
    assert JobFilter().matches(_job())
    assert JobFilter().matches(garbage)
    assert JobFilter().describe() == ""


def test_type_filter_takes_names_and_shell_patterns() -> None:
    resize, thumb, order = _job("image.resize"), _job("image.thumbnail"), _job("order.placed")
    assert [JobFilter(job_types=("image.resize",)).matches(j) for j in (resize, thumb, order)] == [
        True,
        False,
        False,
    ]
    assert [JobFilter(job_types=("image.*",)).matches(j) for j in (resize, thumb, order)] == [
        True,
        True,
        False,
    ]
    either = JobFilter(job_types=("order.placed", "image.thumbnail"))
    assert [either.matches(j) for j in (resize, thumb, order)] == [False, True, True]
    # A body that is not a job has no type: a type filter never selects it.
    assert not JobFilter(job_types=("*",)).matches(DeadJob.from_message(_message("x")))


def test_error_filter_searches_reason_type_and_message_ignoring_case() -> None:
    job = _job(reason="attempts_exhausted", error_type="TimeoutError", error_message="upstream 504")
    for text in ("timeouterror", "UPSTREAM 5", "attempts_exhausted"):
        assert JobFilter(error=text).matches(job), text
    assert not JobFilter(error="connection reset").matches(job)
    native = DeadJob.from_message(_message(encode(make_envelope("image.resize", {}))))
    assert JobFilter(error="native redrive").matches(native)


def test_since_filter_uses_the_last_failure_time() -> None:
    recent = _job(failed_at=NOW - timedelta(minutes=5))
    old = _job(failed_at=NOW - timedelta(days=2))
    last_hour = JobFilter(since=NOW - timedelta(hours=1))
    assert (last_hour.matches(recent), last_hour.matches(old)) == (True, False)
    # Without a failure record, the time the message reached the DLQ counts.
    native = DeadJob.from_message(_message("x", sent_at=NOW - timedelta(minutes=1)))
    assert last_hour.matches(native)


def test_id_filter_takes_job_ids_and_message_ids() -> None:
    a, b = _job(message_id="m-a"), _job(message_id="m-b")
    assert a.job_id is not None
    by_job = JobFilter(ids=frozenset({a.job_id}))
    by_message = JobFilter(ids=frozenset({"m-b"}))
    assert (by_job.matches(a), by_job.matches(b)) == (True, False)
    assert (by_message.matches(a), by_message.matches(b)) == (False, True)


def test_every_given_criterion_must_hold() -> None:
    job = _job("image.resize", error_message="upstream 504")
    assert JobFilter(job_types=("image.*",), error="504").matches(job)
    assert not JobFilter(job_types=("image.*",), error="401").matches(job)
    described = JobFilter(
        job_types=("image.*",), error="504", since=NOW, ids=frozenset({"a", "b"})
    ).describe()
    assert described == (
        "type image.*, error containing '504', failed since 2026-11-23 12:00:00Z, 2 id(s)"
    )


# -- decoding ------------------------------------------------------------------------------


def test_a_dead_letter_with_a_record_is_decoded() -> None:
    job = _job("image.resize", data={"url": "https://example.com/" + "x" * 300})
    assert job.reason == "attempts_exhausted"
    assert job.error == "TimeoutError: upstream timed out"
    assert job.failed_at == NOW - timedelta(minutes=10)
    assert job.first_attempt_at == NOW - timedelta(minutes=10, seconds=30)
    assert job.sent_at == NOW - timedelta(minutes=5)
    assert len(job.payload_summary()) == 120
    assert job.payload_summary().endswith("…")
    excerpt = job.traceback_excerpt().splitlines()
    assert excerpt[0] == "…"
    assert excerpt[-1] == "TimeoutError: upstream timed out"
    assert len(excerpt) == 13
    shown = job.to_json(traceback=True, full=True)
    assert (shown["attempts"], shown["max_attempts"], shown["receive_count"]) == (5, 5, 4)
    assert shown["envelope"]["id"] == job.job_id
    assert shown["body"] is None
    record = json.loads(json.dumps(job.export_record()))
    assert record["body"] == job.body
    assert record["failure"]["job_id"] == job.job_id
    assert FAILURE_ATTRIBUTE in record["message_attributes"]


def test_native_redrives_and_strange_bodies_are_decoded_without_error() -> None:
    envelope = make_envelope("image.resize", {"width_px": 1})
    native = DeadJob.from_message(_message(encode(envelope)))
    assert (native.job_id, native.job_type) == (envelope.id, "image.resize")
    assert native.reason == NATIVE_REDRIVE_REASON
    assert native.error == "no failure record; received 4 times"
    assert native.to_json()["attempts"] is None

    half = DeadJob.from_message(_message('{"id": "j-9", "type": "x.y", "data": 1}'))
    assert (half.job_id, half.job_type, half.envelope_error) == ("j-9", "x.y", "not_an_envelope")
    garbage = DeadJob.from_message(_message("\x00 binary-ish"))
    assert (garbage.job_id, garbage.job_type) == (None, None)
    assert garbage.payload_summary() == "(invalid_json) \x00 binary-ish"
    assert garbage.to_json(full=True)["body"] == "\x00 binary-ish"

    broken_record = _message("x")
    broken_record["MessageAttributes"] = {
        FAILURE_ATTRIBUTE: {"DataType": "String", "StringValue": "{not json"}
    }
    unreadable = DeadJob.from_message(broken_record)
    assert unreadable.reason == f"unreadable failure record ({FAILURE_ATTRIBUTE})"


# -- redrive stamping ----------------------------------------------------------------------


def test_a_redrive_is_recorded_in_the_envelope_and_nothing_else_changes() -> None:
    envelope = make_envelope("image.resize", {"width_px": 640}, idempotency_key="k-1")
    original = json.loads(encode(envelope))
    original["vendorext"] = "kept"  # an extension this code does not know
    body = json.dumps(original, separators=(",", ":"))

    once = stamp_redrive(body, NOW)
    doc = json.loads(once)
    assert (doc[REDRIVE_COUNT], doc[REDRIVEN_AT]) == (1, "2026-11-23T12:00:00Z")
    assert {k: v for k, v in doc.items() if k not in (REDRIVE_COUNT, REDRIVEN_AT)} == original
    assert list(doc)[: len(original)] == list(original)  # members keep their order
    assert decode(once).id == envelope.id

    twice = json.loads(stamp_redrive(once, NOW + timedelta(hours=1)))
    assert (twice[REDRIVE_COUNT], twice[REDRIVEN_AT]) == (2, "2026-11-23T13:00:00Z")
    stamped = DeadJob.from_message(_message(json.dumps(twice)))
    assert (stamped.redrive_count, stamped.redriven_at) == (2, "2026-11-23T13:00:00Z")


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        '{"hello": "world"}',
        '{"specversion":"1.0","id":"x","type":"a.b","time":"2026-01-01T00:00:00Z",'
        '"conveyorversion":99}',
        "",
    ],
)
def test_a_body_that_is_not_a_valid_envelope_goes_back_unchanged(body: str) -> None:
    assert stamp_redrive(body, NOW) == body


def test_a_nonsense_redrive_count_starts_again_at_one() -> None:
    doc = json.loads(encode(make_envelope("a.b", {})))
    doc[REDRIVE_COUNT] = "many"
    assert json.loads(stamp_redrive(json.dumps(doc), NOW))[REDRIVE_COUNT] == 1


def test_the_failure_record_is_dropped_on_the_way_back() -> None:
    kept = {"DataType": "String", "StringValue": "00-abc", "StringListValues": []}
    attributes: dict[str, dict[str, Any]] = {
        "traceparent": kept,
        FAILURE_ATTRIBUTE: {"DataType": "String", "StringValue": "{}"},
        "empty": {"DataType": "String", "StringValue": ""},
    }
    assert resend_attributes(attributes) == {
        "traceparent": {"DataType": "String", "StringValue": "00-abc"}
    }


def test_fifo_targets_get_the_message_group_and_a_deduplication_id() -> None:
    job = _job()
    fifo = TargetQueue("ledger", "p-e-ledger.fifo", fifo=True)
    entry = send_entry(job, fifo, NOW, "0")
    assert entry["MessageGroupId"] == job.job_id  # no group recorded: one group per job
    assert entry["MessageDeduplicationId"] == job.message_id
    assert "MessageAttributes" not in entry  # only the failure record was there
    grouped = DeadJob.from_message(_message(job.body, group="account-7"))
    assert send_entry(grouped, fifo, NOW, "0")["MessageGroupId"] == "account-7"
    standard = send_entry(job, TargetQueue("images", "p-e-images", fifo=False), NOW, "0")
    assert "MessageGroupId" not in standard
    assert "MessageDeduplicationId" not in standard
    assert json.loads(standard["MessageBody"])[REDRIVE_COUNT] == 1


def test_batches_hold_at_most_the_size_and_the_byte_limit() -> None:
    small = [{"Id": str(i), "MessageBody": "x"} for i in range(23)]
    assert [len(c) for c in chunk_entries(small, 10)] == [10, 10, 3]
    assert [len(c) for c in chunk_entries(small, 5)] == [5, 5, 5, 5, 3]
    big = [{"Id": str(i), "MessageBody": "x" * (SQS_MAX_BATCH_BYTES // 3)} for i in range(5)]
    assert [len(c) for c in chunk_entries(big, 10)] == [3, 2]
    assert list(chunk_entries([], 10)) == []


def test_the_pacer_spreads_batches_over_time() -> None:
    now = [100.0]
    slept: list[float] = []
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(5.0, clock=lambda: now[0], sleep=sleep)
    assert pacer.batch_size == 5
    for _ in range(3):
        pacer.wait(5, lambda: waited.append(now[0]))
    # 15 messages at 5/s: the batches go at 0 s, 1 s and 2 s.
    assert now[0] == pytest.approx(102.0)
    assert sum(slept) == pytest.approx(2.0)
    assert waited == [pytest.approx(101.0), pytest.approx(102.0)]
    assert Pacer(0.5).batch_size == 1
    assert Pacer(None).batch_size == 10
    unlimited = Pacer(None, sleep=lambda s: pytest.fail("an unlimited pacer never sleeps"))
    for _ in range(3):
        unlimited.wait(10)


# -- naming queues -------------------------------------------------------------------------


def test_a_dlq_is_named_by_its_queue_or_its_own_names() -> None:
    topology = load_topology(REPO / "queues.yaml", environment="prod")
    for name in ("billing", "billing-dlq", "conveyor-prod-billing-dlq"):
        dlq = resolve_dlq(topology, name)
        assert (dlq.queue, dlq.name, dlq.source_name) == (
            "billing",
            "conveyor-prod-billing-dlq",
            "conveyor-prod-billing",
        )
    with pytest.raises(DlqError, match=r"unknown queue 'nope' \(known: billing, images,"):
        resolve_dlq(topology, "nope")
    with pytest.raises(DlqError, match="is the queue 'billing', not a dead-letter queue") as exc:
        resolve_dlq(topology, "conveyor-prod-billing")
    assert exc.value.usage


def test_a_redrive_target_is_a_declared_queue_never_a_dlq() -> None:
    topology = load_topology(REPO / "queues.yaml", environment="prod")
    assert resolve_target(topology, "images") == TargetQueue(
        "images", "conveyor-prod-images", fifo=False
    )
    assert resolve_target(topology, "conveyor-prod-images").queue == "images"
    for name in ("images-dlq", "conveyor-prod-images-dlq"):
        with pytest.raises(DlqError, match="is a dead-letter queue"):
            resolve_target(topology, name)
    with pytest.raises(DlqError, match="unknown queue"):
        resolve_target(topology, "elsewhere")


# -- rendering -----------------------------------------------------------------------------


def test_ages_read_at_a_glance() -> None:
    assert [render.age(s) for s in (0, 59, 60, 3599, 3600 + 5 * 60, 2 * 86400 + 4 * 3600)] == [
        "0s",
        "59s",
        "1m",
        "59m",
        "1h 05m",
        "2d 04h",
    ]
    assert render.when(NOW - timedelta(minutes=3), NOW) == "2026-11-23 11:57:00Z (3m ago)"
    assert render.when(None) == "unknown"


def test_a_job_block_says_what_died_why_and_when() -> None:
    job = _job("image.resize", error_message="upstream 504")
    block = render.job_block(job, traceback=True)
    assert block[0] == f"{job.job_id}  image.resize  attempts 5/5"
    assert "  reason    attempts_exhausted" in block
    assert "  error     TimeoutError: upstream 504" in block
    assert '  payload   {"width_px":640}' in block
    assert block[-1] == "    TimeoutError: upstream 504"
    native = render.job_block(DeadJob.from_message(_message("raw")), full=True)
    assert native[0] == "(no job id)  (unknown type)  received 4x"
    assert native[-2:] == ["  body", "    raw"]
    assert render.job_line(job) == (
        f"{job.job_id}  image.resize  attempts_exhausted  TimeoutError: upstream 504"
    )
    assert render.count_by_type([job, job, _job("order.placed")]) == (
        "image.resize: 2, order.placed: 1"
    )


def test_the_list_table_aligns_columns_and_marks_lower_bounds() -> None:
    topology = load_topology(REPO / "queues.yaml", environment="prod")
    rows = [
        DlqSummary(resolve_dlq(topology, "images"), True, Depth(3, 1), 7200.0, oldest_exact=False),
        DlqSummary(resolve_dlq(topology, "billing"), True, Depth(0, 0)),
        DlqSummary(resolve_dlq(topology, "notifications"), exists=False),
    ]
    assert render.list_table(rows) == [
        "QUEUE          DLQ                              DEPTH    IN FLIGHT  OLDEST",
        "images         conveyor-prod-images-dlq         4        1          >= 2h 00m",
        "billing        conveyor-prod-billing-dlq        0        0          -",
        "notifications  conveyor-prod-notifications-dlq  missing  -          -",
    ]
