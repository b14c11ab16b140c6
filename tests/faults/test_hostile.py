"""Hostile and foreign input: a burst of messages built to break a consumer, interleaved
with good jobs, into a queue served by real `conveyor worker` nodes. Each hostile one is
dead-lettered with its reason on its first receive, no node dies or restarts (same pids
throughout), and every good job runs. See docs/reliability.md, "Hostile input"."""

from __future__ import annotations

import base64
import json
from typing import Any

from infra import aws
from infra.envelope import MAX_JSON_DEPTH, encode, make_envelope
from tests.faults.harness import Cluster, notes, size
from tests.support.scenarios import report

DEEP = 1_200  # levels: past the json module's recursion limit
#: Through SNS: the emulator's own SNS (moto) decodes a body to apply the subscription's
#: body filter policy and fails with RecursionError past about 900 levels; 700 is still
#: seven times the workers' limit (infra.envelope.MAX_JSON_DEPTH).
DEEP_VIA_SNS = 700


def _job(job_id: str, **fields: Any) -> str:
    doc = {"specversion": "1.0", "id": job_id, "type": "fault.note", "source": "/hostile"}
    doc.update(fields)
    return json.dumps(doc)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _raw(job_id: str, tail: str) -> str:
    """A job's JSON text with ``tail`` (raw JSON text: numbers, escapes) as its last fields."""
    return '{"specversion":"1.0","id":"' + job_id + '","type":"fault.note",' + tail + "}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


NINES = "9" * 5_000  # past Python's 4,300-digit limit for int(str)
LATIN1 = bytes(range(0x80, 0x100)).decode("latin-1")  # bytes that are not UTF-8, as text

#: (what it is, the body, the reason the worker must give): sent straight to the queue.
DIRECT = [
    ("deep nesting, raw", _nested(DEEP), "too_deep"),
    ("deep nesting of objects", '{"a":' * DEEP + "1" + "}" * DEEP, "too_deep"),
    ("just past the depth limit", _nested(MAX_JSON_DEPTH + 1), "too_deep"),
    ("a 250 KB body of brackets", "[" * 250_000, "too_deep"),
    ("a 250 KB body of text", "x" * 250_000, "invalid_json"),
    ("a 240 KB job, data a wide array", _job("h-wide", data=[0] * 80_000), "invalid_payload"),
    ("bytes that are not UTF-8, read as Latin-1", LATIN1, "invalid_json"),
    ("mojibake", "\u00c3\u00a9\u00c3\u00a8 \u00e2\u20ac\u2122 {", "invalid_json"),
    ("whitespace", "   ", "invalid_json"),
    (
        "an integer past the digit limit",
        _raw("h-big", f'"data":{{"label":{NINES}}}'),
        "invalid_json",
    ),
    ("a 4,000-digit label", _raw("h-num", f'"data":{{"label":{NINES[:4000]}}}'), "invalid_payload"),
    (
        "a 4,000-digit version",
        _raw("h-ver", f'"conveyorversion":{NINES[:4000]}'),
        "unsupported_version",
    ),
    ("NaN as the data", _raw("h-nan", '"data":NaN'), "invalid_payload"),
    ("a JSON number", "42", "not_an_envelope"),
    ("a JSON string", '"specversion"', "not_an_envelope"),
    ("JSON null", "null", "not_an_envelope"),
    ("an empty array", "[]", "not_an_envelope"),
    ("id is a number", '{"specversion":"1.0","id":5,"type":"fault.note"}', "invalid_envelope"),
    ("type is a list", _job("h-t", type=["fault.note"]), "invalid_envelope"),
    ("specversion is a number", _job("h-s", specversion=1.0), "invalid_envelope"),
    ("source is an object", _job("h-src", source={}), "invalid_envelope"),
    ("time is a number", _job("h-time", time=1767225600), "invalid_envelope"),
    ("dataschema not a URI", _job("h-schema", dataschema="not a uri"), "invalid_envelope"),
    ("lone surrogate in the id", _raw("\\ud800", '"data":{"label":"x"}'), "invalid_envelope"),
    ("lone surrogate in an extension", _raw("h-ext", '"odd":"\\udfff"'), "invalid_envelope"),
    ("data_base64 not base64", _job("h-b64", data_base64="!!!"), "invalid_envelope"),
    (
        "data_base64 of a PNG",
        _job("h-png", datacontenttype="image/png", data_base64=_b64(b"\x89PNG")),
        "unsupported_content_type",
    ),
    (
        "data_base64 of deep JSON",
        _job("h-b64d", data_base64=_b64(_nested(DEEP).encode())),
        "too_deep",
    ),
]

#: Published through SNS (raw delivery): the same body reaches the queue.
VIA_SNS = [
    (
        "deep nesting inside data, via SNS",
        _raw("h-sns-deep", f'"data":{_nested(DEEP_VIA_SNS)}'),
        "too_deep",
    ),
    (
        "lone surrogate in the id, via SNS",
        _raw("\\udbff", '"data":{"label":"x"}'),
        "invalid_envelope",
    ),
]


#: Message attributes a consumer must carry without reading: Binary, odd names.
ODD_ATTRIBUTES = {
    "blob": {"DataType": "Binary", "BinaryValue": bytes(range(256))},
    "n": {"DataType": "Number", "StringValue": "123456789012345678901234567890"},
    "x.custom-type": {"DataType": "String.weird", "StringValue": "\u00e9\u4e2d\U0001f600"},
}


def test_hostile_messages_are_dead_lettered_once_and_nodes_never_restart(cluster: Cluster) -> None:
    nodes = cluster.nodes("a", 2)
    pids = [node.pid for node in nodes]
    sqs, sns = aws.client("sqs"), aws.client("sns")
    url = cluster.url("alpha")

    good = cluster.publish(notes("fault.note", size(20, 200), "before"))
    for _, body, _ in DIRECT:
        sqs.send_message(QueueUrl=url, MessageBody=body)
        # Interleaved: a good job sent the same way, with attributes it must carry.
        job = make_envelope("fault.note", {"label": "between"})
        sqs.send_message(QueueUrl=url, MessageBody=encode(job), MessageAttributes=ODD_ATTRIBUTES)
        good.append(job.id)
    for _, body, _ in VIA_SNS:
        sns.publish(TopicArn=cluster.topic_arn(), Message=body)
    # A foreign event: no time, no conveyorversion, no datacontenttype, an extension.
    foreign = _job("h-foreign-ok", partitionkey="p1", data={"label": "foreign"})
    sns.publish(TopicArn=cluster.topic_arn(), Message=foreign)
    good.append("h-foreign-ok")
    # A lone surrogate inside the payload is the payload model's business: a str field takes
    # it (JSON allows the escape), so this job runs.
    sqs.send_message(QueueUrl=url, MessageBody=_raw("h-pay", '"data":{"label":"\\udc80"}'))
    good.append("h-pay")
    good += cluster.publish(notes("fault.note", size(20, 200), "after"))

    hostile = [*DIRECT, *VIA_SNS]
    bodies = [body for _, body, _ in hostile]
    tally = cluster.settle("hostile input", good, poison=bodies, report=False)

    restarted = sum(
        1 for node, pid in zip(nodes, pids, strict=True) if not node.alive or node.pid != pid
    )
    good_lost = [job_id for job_id in good if not cluster.ok_runs(job_id)]
    line = (
        f"hostile input: accepted={tally.accepted}, dead_lettered={tally.dead_lettered},"
        f" restarted={restarted}, good_jobs_lost={len(good_lost)}"
    )
    report(line)

    assert restarted == 0, [node.text()[-3000:] for node in nodes]
    assert good_lost == []
    assert tally.lost == []
    assert tally.dead_lettered == len(hostile)
    for node in nodes:
        assert "Unrecoverable error" not in node.text()
    # Each hostile message is in the DLQ once, body unchanged, with its reason, after ONE receive.
    cluster.assert_dead_lettered_once(hostile, queue="alpha")
