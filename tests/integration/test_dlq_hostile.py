"""`conveyor dlq` on hostile messages put straight into a DLQ of the real emulator.

Bodies nested deeper than ``json.loads`` recurses, C1 controls and bidi overrides,
JSON-escaped lone surrogates, failure attributes that are not records: every
command exits 0, shows each message (the undecodable ones by message id, size
and why), exports it, redrives it byte for byte and deletes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner, Result

from conveyor.cli.dlq import app
from infra import aws, provision
from infra.envelope import encode, make_envelope
from infra.failure import FAILURE_ATTRIBUTE
from infra.topology import Topology, load_topology
from tests import REPO

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from tests.conftest import AwsEnv

pytestmark = pytest.mark.integration

QUEUES_FILE = REPO / "tests" / "fixtures" / "dlq.yaml"
DEEP = '{"a":' * 1200 + "1" + "}" * 1200
HOSTILE_TEXT = "not json \x9b31m \u202e reversed"
SURROGATE = encode(make_envelope("dlq.fragile", {"label": "x"})).replace(
    '"label":"x"', '"label":"\\udcff"'
)


def _failure_attribute(value: str) -> dict[str, Any]:
    return {FAILURE_ATTRIBUTE: {"DataType": "String", "StringValue": value}}


class Hostile:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.sqs: SQSClient = aws.client("sqs")
        self.runner = CliRunner()
        self.dlq = self.url(topology.dlq_name("work"))
        self.work = self.url(topology.queue_name("work"))
        #: message id -> body, as sent.
        self.sent: dict[str, str] = {}

    def url(self, name: str) -> str:
        return self.sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def put(self, body: str, attributes: dict[str, Any] | None = None) -> str:
        answer = self.sqs.send_message(
            QueueUrl=self.dlq, MessageBody=body, MessageAttributes=attributes or {}
        )
        self.sent[answer["MessageId"]] = body
        return answer["MessageId"]

    def cli(self, *args: str) -> Result:
        result = self.runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return result

    def drain(self, url: str) -> dict[str, str]:
        bodies: dict[str, str] = {}
        while True:
            got = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300, WaitTimeSeconds=0
            ).get("Messages", [])
            if not got:
                return bodies
            bodies.update({m["MessageId"]: m["Body"] for m in got})


@pytest.fixture
def hostile(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> Hostile:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(QUEUES_FILE))
    topology = load_topology(QUEUES_FILE)
    provision.apply(topology)
    h = Hostile(topology)
    h.put(DEEP)
    h.put(HOSTILE_TEXT, _failure_attribute(DEEP))
    h.put(SURROGATE, _failure_attribute("[1, 2, 3]"))
    h.put("{}", _failure_attribute('{"reason": "x\\u001b[2J", "attempts": "many"}'))
    return h


def test_show_lists_every_hostile_message_escaped(hostile: Hostile) -> None:
    text = hostile.cli("show", "work", "--traceback", "--full").output
    for message_id in hostile.sent:
        assert message_id in text
    assert f"undecodable: JSON nested too deeply to decode ({len(DEEP)} bytes)" in text
    assert "\x9b" not in text
    assert "\u202e" not in text
    assert "\x1b" not in text
    assert "\\x9b31m" in text
    assert "\\u202e" in text
    assert "unreadable failure record" in text
    doc = json.loads(hostile.cli("show", "work", "--json", "--full").stdout)
    assert {j["message_id"] for j in doc["jobs"]} == set(hostile.sent)
    deep = next(j for j in doc["jobs"] if j["undecodable"])
    assert deep["size_bytes"] == len(DEEP)


def test_export_writes_every_raw_body(hostile: Hostile, tmp_path: Path) -> None:
    out = tmp_path / "dead.jsonl"
    hostile.cli("export", "work", str(out))
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {r["message_id"]: r["body"] for r in lines} == hostile.sent
    stdout = hostile.cli("export", "work", "-").stdout
    assert len(stdout.splitlines()) == len(hostile.sent)
    assert "\x9b" not in stdout


def test_redrive_moves_every_hostile_body_intact(hostile: Hostile) -> None:
    hostile.cli("redrive", "work", "--yes")
    moved = sorted(hostile.drain(hostile.work).values())
    # Not envelopes, or undecodable: byte for byte. The envelope gets its redrive stamp.
    untouched = sorted(b for b in hostile.sent.values() if b != SURROGATE)
    assert [b for b in moved if b in untouched] == untouched
    stamped = [json.loads(b) for b in moved if b not in untouched]
    assert len(stamped) == 1
    assert stamped[0]["data"] == {"label": "\udcff"}
    assert hostile.drain(hostile.dlq) == {}


def test_delete_removes_hostile_messages_by_message_id(hostile: Hostile) -> None:
    ids = list(hostile.sent)
    text = hostile.cli("delete", "work", *ids, "--yes").output
    assert f"deleted {len(ids)} messages" in text
    assert "\x9b" not in text
    assert hostile.drain(hostile.dlq) == {}
