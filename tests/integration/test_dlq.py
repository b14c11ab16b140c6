"""`conveyor dlq` against the real emulator over HTTP, on DLQs seeded the way workers write them.

No worker runs here: what reaches the source queue stays there to be inspected.
The end-to-end tests (tests/e2e/test_dlq*.py) cover the runs with real workers.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner, Result

from conveyor.cli.dlq import app
from infra import aws, provision
from infra.envelope import decode, encode
from infra.failure import FAILURE_ATTRIBUTE, REDRIVE_COUNT, REDRIVEN_AT
from infra.topology import Topology, load_topology
from ops.dlq import NATIVE_REDRIVE_REASON, Scan
from tests import REPO
from tests.support.queues import dead_letter, receive_all, visible_in_flight

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration

QUEUES_FILE = REPO / "tests" / "fixtures" / "dlq.yaml"


class Dlq:
    """The provisioned DLQ topology and what the tests do with it."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.sqs: SQSClient = aws.client("sqs")
        self.runner = CliRunner()

    def url(self, name: str) -> str:
        return self.sqs.get_queue_url(QueueName=name)["QueueUrl"]

    @property
    def work_dlq(self) -> str:
        return self.url(self.topology.dlq_name("work"))

    @property
    def work(self) -> str:
        return self.url(self.topology.queue_name("work"))

    def cli(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args))

    def depth(self, url: str) -> tuple[int, int]:
        """(visible, in flight): right after a command, in flight must be 0 (released)."""
        return visible_in_flight(url)

    def drain(self, url: str) -> list[dict[str, Any]]:
        """Every message of a queue, received for good (the test owns the queue)."""
        return receive_all(url, hold_s=300, sqs=self.sqs)


@pytest.fixture
def dlq(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> Dlq:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(QUEUES_FILE))
    topology = load_topology(QUEUES_FILE)
    provision.apply(topology)
    return Dlq(topology)


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_show_decodes_every_kind_of_dead_letter_and_consumes_nothing(dlq: Dlq) -> None:
    doomed = dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "doomed")
    broken = dead_letter(
        dlq.sqs,
        dlq.work_dlq,
        "dlq.broken",
        "never",
        reason="permanent_error",
        error_type="PermanentError",
        attempts=1,
    )
    # What SQS's native redrive leaves (a worker died): the body, no failure record.
    lost = dead_letter(dlq.sqs, dlq.work, "dlq.fragile", "lost")  # only to build a body
    dlq.drain(dlq.work)
    dlq.sqs.send_message(QueueUrl=dlq.work_dlq, MessageBody=json.dumps({"id": lost.id}))
    dlq.sqs.send_message(QueueUrl=dlq.work_dlq, MessageBody="not json at all")

    first = _json(dlq.cli("show", "work", "--json", "--traceback"))
    assert dlq.depth(dlq.work_dlq) == (4, 0)  # all visible again at once, none consumed
    second = _json(dlq.cli("show", "work-dlq", "--json"))
    assert {j["message_id"] for j in first["jobs"]} == {j["message_id"] for j in second["jobs"]}
    assert (first["depth"], first["scanned"], len(first["jobs"])) == (4, 4, 4)

    by_id = {j["job_id"]: j for j in first["jobs"]}
    assert by_id[doomed.id]["type"] == "dlq.fragile"
    assert by_id[doomed.id]["reason"] == "attempts_exhausted"
    assert (by_id[doomed.id]["attempts"], by_id[doomed.id]["max_attempts"]) == (2, 2)
    assert by_id[doomed.id]["error_message"] == "cannot process doomed"
    assert "ValueError: doomed" in by_id[doomed.id]["traceback"]
    assert by_id[doomed.id]["payload"] == '{"label":"doomed"}'
    assert (by_id[broken.id]["reason"], by_id[broken.id]["error_type"]) == (
        "permanent_error",
        "PermanentError",
    )
    native = by_id[lost.id]
    assert native["reason"] == NATIVE_REDRIVE_REASON
    assert native["attempts"] is None
    assert native["receive_count"] >= 1
    [garbage] = [j for j in first["jobs"] if j["job_id"] is None]
    assert garbage["reason"] == NATIVE_REDRIVE_REASON
    assert garbage["payload"] == "(invalid_json) not json at all"

    text = dlq.cli("show", "work", "--full")
    assert text.exit_code == 0, text.output
    assert f"{doomed.id}  dlq.fragile  attempts 2/2" in text.stdout
    assert "error     ValueError: cannot process doomed" in text.stdout
    assert f'"id": "{doomed.id}"' in text.stdout  # the whole envelope
    assert dlq.depth(dlq.work_dlq) == (4, 0)


def test_show_filters_by_type_error_time_and_limit(dlq: Dlq) -> None:
    old = dead_letter(
        dlq.sqs,
        dlq.work_dlq,
        "dlq.fragile",
        "old",
        failed_at=datetime.now(UTC) - timedelta(days=2),
        error_message="connection reset by peer",
    )
    new = dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "new", error_message="timed out")
    broken = dead_letter(dlq.sqs, dlq.work_dlq, "dlq.broken", "x", reason="permanent_error")

    def ids(*args: str) -> set[str]:
        return {j["job_id"] for j in _json(dlq.cli("show", "work", "--json", *args))["jobs"]}

    # The selection rules are unit-tested; here, that each option reaches them.
    assert ids("--type", "dlq.frag*") == {old.id, new.id}
    assert ids("--error", "RESET BY") == {old.id}
    assert ids("--since", "1h") == {new.id, broken.id}
    assert len(ids("--limit", "2")) == 2
    none = dlq.cli("show", "work", "--type", "nope.*")
    assert none.exit_code == 0
    assert "no job in" in none.stdout
    bad = dlq.cli("show", "work", "--since", "yesterday")
    assert bad.exit_code == 2
    assert "invalid --since 'yesterday'" in bad.output


def test_list_reports_every_dlq_with_depth_and_oldest_age(dlq: Dlq) -> None:
    empty = dlq.cli("list")
    assert empty.exit_code == 0, empty.output
    assert "every dead-letter queue is empty" in empty.stderr

    for label in ("a", "b", "c"):
        dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", label)
    rows = {r["queue"]: r for r in _json(dlq.cli("list", "--json"))["dlqs"]}
    assert set(rows) == {"work", "ledger"}
    work = rows["work"]
    assert (work["dlq"], work["source"]) == (
        dlq.topology.dlq_name("work"),
        dlq.topology.queue_name("work"),
    )
    assert (work["depth"], work["visible"], work["in_flight"]) == (3, 3, 0)
    assert work["oldest_age_s"] is not None
    assert work["oldest_age_s"] >= 0
    assert work["oldest_age_exact"] is True
    assert (rows["ledger"]["depth"], rows["ledger"]["oldest_age_s"]) == (0, None)
    assert dlq.depth(dlq.work_dlq) == (3, 0)
    table = dlq.cli("list")
    assert table.stdout.splitlines()[0].split() == [
        "QUEUE",
        "DLQ",
        "DEPTH",
        "IN",
        "FLIGHT",
        "OLDEST",
    ]


def test_redrive_records_the_redrive_and_drops_the_failure_record(dlq: Dlq) -> None:
    trace = {"traceparent": {"DataType": "String", "StringValue": "00-abc"}}
    job = dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "again", attributes=trace)
    original = json.loads(encode(job))
    dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "stays")
    dlq.sqs.send_message(QueueUrl=dlq.work_dlq, MessageBody="raw bytes, not a job")
    [garbage] = [j for j in _json(dlq.cli("show", "work", "--json"))["jobs"] if j["job_id"] is None]

    # --ids names exactly what moves: no confirmation needed.
    moved = dlq.cli("redrive", "work", "--ids", f"{job.id},{garbage['message_id']}")
    assert moved.exit_code == 0, moved.output
    assert "moved 2 of 2 jobs" in moved.stdout
    assert dlq.depth(dlq.work_dlq) == (1, 0)

    back = {m["Body"]: m for m in dlq.drain(dlq.work)}
    assert "raw bytes, not a job" in back  # byte for byte
    [stamped] = [json.loads(b) for b in back if b.startswith("{")]
    assert stamped[REDRIVE_COUNT] == 1
    assert datetime.fromisoformat(stamped[REDRIVEN_AT]) <= datetime.now(UTC)
    assert {k: v for k, v in stamped.items() if k not in (REDRIVE_COUNT, REDRIVEN_AT)} == original
    assert decode(json.dumps(stamped)).id == job.id  # still a valid envelope, same job id
    attributes = back[json.dumps(stamped, separators=(",", ":"))].get("MessageAttributes", {})
    assert FAILURE_ATTRIBUTE not in attributes
    assert attributes["traceparent"]["StringValue"] == "00-abc"

    # A second redrive counts on.
    dlq.sqs.send_message(QueueUrl=dlq.work_dlq, MessageBody=json.dumps(stamped))
    assert dlq.cli("redrive", "work", "--ids", job.id).exit_code == 0
    [again] = [json.loads(m["Body"]) for m in dlq.drain(dlq.work)]
    assert again[REDRIVE_COUNT] == 2


def test_redrive_to_a_fifo_queue_keeps_message_groups(dlq: Dlq) -> None:
    ledger_dlq = dlq.url(dlq.topology.dlq_name("ledger"))
    jobs = [
        dead_letter(dlq.sqs, ledger_dlq, "dlq.entry", f"e{i}", group=f"account-{i % 2}")
        for i in range(4)
    ]
    result = dlq.cli("redrive", "ledger", "--yes", "--limit", "3")
    assert result.exit_code == 0, result.output
    assert "moved 3 of 3 jobs" in result.stdout
    back = dlq.drain(dlq.url(dlq.topology.queue_name("ledger")))
    assert len(back) == 3
    groups = {json.loads(m["Body"])["id"]: m["Attributes"]["MessageGroupId"] for m in back}
    expected = {j.id: f"account-{i % 2}" for i, j in enumerate(jobs)}
    assert all(expected[job_id] == group for job_id, group in groups.items())

    # From a standard DLQ to a FIFO queue: the job id becomes the group.
    job = dead_letter(dlq.sqs, dlq.work_dlq, "dlq.entry", "cross")
    crossed = dlq.cli("redrive", "work", "--to", "ledger", "--yes")
    assert crossed.exit_code == 0, crossed.output
    assert "no handler" not in crossed.stderr
    [message] = dlq.drain(dlq.url(dlq.topology.queue_name("ledger")))
    assert message["Attributes"]["MessageGroupId"] == job.id


def test_redrive_warns_when_the_target_cannot_run_the_jobs(dlq: Dlq) -> None:
    dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "misrouted")
    result = dlq.cli("redrive", "work", "--to", "ledger", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "queue 'ledger' has no handler for dlq.fragile" in result.stderr
    assert "dry run: 1 jobs would move" in result.stdout
    assert dlq.depth(dlq.work_dlq) == (1, 0)


def test_commands_that_would_ask_refuse_without_a_terminal(dlq: Dlq) -> None:
    job = dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "keep")
    dead_letter(dlq.sqs, dlq.work_dlq, "dlq.broken", "keep too")
    for args in (("purge", "work"), ("delete", "work", job.id), ("redrive", "work")):
        result = dlq.cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "refusing to continue without confirmation: pass --yes" in result.stderr
        assert dlq.depth(dlq.work_dlq) == (2, 0)
    assert dlq.depth(dlq.work) == (0, 0)
    purge = dlq.cli("purge", "work")
    assert "holds ~2 messages" in purge.stdout  # what it would do, printed first


def test_delete_by_job_id_or_message_id(dlq: Dlq) -> None:
    one = dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "one")
    dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "two")
    dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "three")
    shown = _json(dlq.cli("show", "work", "--json"))["jobs"]
    three_message = next(j["message_id"] for j in shown if j["payload"] == '{"label":"three"}')

    result = dlq.cli("delete", "work", one.id, three_message, "no-such-id", "--yes")
    assert result.exit_code == 1, result.output  # partial: one id was not found
    assert "will delete 2 messages" in result.stdout
    assert "not found in" in result.stderr
    assert "no-such-id" in result.stderr
    assert "deleted 2 messages" in result.stdout
    [left] = _json(dlq.cli("show", "work", "--json"))["jobs"]
    assert left["payload"] == '{"label":"two"}'

    nothing = dlq.cli("delete", "work", "no-such-id", "--yes")
    assert nothing.exit_code == 1
    assert "nothing to delete" in nothing.stderr


def test_purge_deletes_everything_and_can_run_again_at_once(dlq: Dlq) -> None:
    for label in ("a", "b", "c"):
        dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", label)
    first = dlq.cli("purge", "work", "--yes")
    assert first.exit_code == 0, first.output
    assert "deleted 3 messages" in first.stdout
    assert dlq.depth(dlq.work_dlq) == (0, 0)
    dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "d")
    # PurgeQueue would refuse a second purge within 60 s; batched deletes do not.
    second = dlq.cli("purge", "work", "--yes")
    assert second.exit_code == 0, second.output
    assert "deleted 1 messages" in second.stdout
    empty = dlq.cli("purge", "work", "--yes")
    assert (empty.exit_code, empty.stdout.strip()) == (
        0,
        f"nothing to purge: {dlq.topology.dlq_name('work')} is empty",
    )


def test_export_writes_one_json_line_per_job_and_leaves_the_dlq_unchanged(
    dlq: Dlq, tmp_path: Path
) -> None:
    jobs = [dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", f"j{i}") for i in range(12)]
    broken = dead_letter(dlq.sqs, dlq.work_dlq, "dlq.broken", "b", reason="permanent_error")
    out = tmp_path / "dead.jsonl"

    result = dlq.cli("export", "work", str(out))
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 13
    assert {r["job_id"] for r in records} == {j.id for j in [*jobs, broken]}
    for record in records:
        assert decode(record["body"]).id == record["job_id"]  # the original body
        assert record["failure"]["job_id"] == record["job_id"]
        assert FAILURE_ATTRIBUTE in record["message_attributes"]
        assert "SentTimestamp" in record["attributes"]
    assert Counter(r["reason"] for r in records) == {"attempts_exhausted": 12, "permanent_error": 1}
    assert dlq.depth(dlq.work_dlq) == (13, 0)

    filtered = dlq.cli("export", "work", "-", "--type", "dlq.broken")
    assert [json.loads(line)["job_id"] for line in filtered.stdout.splitlines()] == [broken.id]
    assert dlq.depth(dlq.work_dlq) == (13, 0)

    for bad in (tmp_path / "missing-dir" / "x.jsonl", tmp_path):
        refused = dlq.cli("export", "work", str(bad))
        assert refused.exit_code == 2
        assert f"conveyor: cannot write {bad}:" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.jsonl"]  # no temp file left

    none = tmp_path / "none.jsonl"
    empty = dlq.cli("export", "work", str(none), "--type", "nope")
    assert empty.exit_code == 0
    assert "nothing to export" in empty.stderr
    assert none.read_text() == ""


def test_unknown_queues_non_dlqs_and_unsupported_native_moves_are_clear_errors(dlq: Dlq) -> None:
    unknown = dlq.cli("show", "nope")
    assert (unknown.exit_code, unknown.stderr.strip()) == (
        2,
        "conveyor: unknown queue 'nope' (known: ledger, work)",
    )
    source = dlq.cli("redrive", dlq.topology.queue_name("work"))
    assert source.exit_code == 2
    assert "is the queue 'work', not a dead-letter queue" in source.stderr
    to_dlq = dlq.cli("redrive", "work", "--to", "work-dlq")
    assert to_dlq.exit_code == 2
    assert "is a dead-letter queue" in to_dlq.stderr
    bad_rate = dlq.cli("redrive", "work", "--rate", "fast")
    assert (bad_rate.exit_code, "invalid --rate 'fast'" in bad_rate.stderr) == (2, True)

    empty = dlq.cli("redrive", "work", "--yes")
    assert (empty.exit_code, empty.stdout.strip()) == (
        0,
        f"nothing to redrive: {dlq.topology.dlq_name('work')} is empty",
    )
    assert dlq.cli("show", "work").stdout.strip() == f"{dlq.topology.dlq_name('work')} is empty"
    named = dlq.cli("redrive", "work", "--ids", "gone-1,gone-2")
    assert named.exit_code == 1  # the jobs asked for are not there
    assert "not found in" in named.stderr
    assert "gone-1, gone-2" in named.stderr

    dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "stay")
    filtered = dlq.cli("redrive", "work", "--native", "--type", "dlq.fragile")
    assert filtered.exit_code == 2
    assert "--native moves every message" in filtered.stderr
    native = dlq.cli("redrive", "work", "--native", "--yes")
    assert native.exit_code == 1
    assert "does not support StartMessageMoveTask" in native.stderr
    assert dlq.depth(dlq.work_dlq) == (1, 0)
    assert dlq.depth(dlq.work) == (0, 0)


def test_a_scan_releases_what_it_holds_when_interrupted(dlq: Dlq) -> None:
    for i in range(15):
        dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", f"i{i}")
    with pytest.raises(KeyboardInterrupt), Scan(dlq.sqs, dlq.work_dlq) as scan:  # noqa: PT012
        for _ in scan.pages():
            assert dlq.depth(dlq.work_dlq)[1] > 0  # held while the scan runs
            raise KeyboardInterrupt
    assert dlq.depth(dlq.work_dlq) == (15, 0)


def test_a_scan_renews_its_hold_only_when_half_of_it_is_over(dlq: Dlq) -> None:
    dead_letter(dlq.sqs, dlq.work_dlq, "dlq.fragile", "held")
    sqs = aws.new_client("sqs")
    calls: list[str] = []
    sqs.meta.events.register(
        "before-sign.sqs.ChangeMessageVisibilityBatch",
        lambda **kwargs: calls.append("extend"),
    )
    now = [1000.0]
    with Scan(sqs, dlq.work_dlq, hold_s=30, clock=lambda: now[0]) as scan:
        [page] = list(scan.pages())
        assert len(page) == 1
        calls.clear()
        now[0] += 10
        scan.heartbeat()
        assert calls == []
        now[0] += 10  # 20 s of a 30 s hold gone
        scan.heartbeat()
        assert calls == ["extend"]
        scan.heartbeat()
        assert calls == ["extend"]  # renewed: not due again yet
    assert calls == ["extend", "extend"]  # the release
    assert dlq.depth(dlq.work_dlq) == (1, 0)


def test_dlqs_that_do_not_exist_are_reported_not_created(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(QUEUES_FILE))  # never applied here
    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 1
    assert "missing" in listed.stdout
    assert "2 DLQ(s) do not exist" in listed.stderr
    assert "run `conveyor infra apply`" in listed.stderr
    shown = runner.invoke(app, ["show", "work"])
    assert shown.exit_code == 1
    assert "does not exist: run `conveyor infra apply`" in shown.stderr
    assert (
        aws.client("sqs")
        .list_queues(QueueNamePrefix=f"cdlq-{aws_env.environment}")
        .get("QueueUrls", [])
        == []
    )
