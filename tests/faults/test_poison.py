"""Poison messages sent straight into a queue: each is dead-lettered with its reason on its
first receive, and the nodes keep running the good jobs around them."""

from __future__ import annotations

import json
from typing import Any

from infra import aws
from infra.claim_check import claim_check_for
from infra.envelope import encode, make_envelope
from tests.faults.harness import Cluster, notes, size


def _doc(**fields: Any) -> str:
    base = {
        "specversion": "1.0",
        "id": fields.pop("id"),
        "type": "fault.note",
        "source": "/faults",
        "time": "2026-01-01T00:00:00Z",
        "data": {"label": "poison"},
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None})


#: (what it is, the body, the reason the worker must give)
POISON = [
    ("invalid JSON", '{"specversion": "1.0", "id": "p1", ', "invalid_json"),
    ("not even text", "\ufffd\u00e9\u4e2d not a job", "invalid_json"),
    ("JSON, not an envelope", '{"hello": "world"}', "not_an_envelope"),
    ("a JSON list", '[{"specversion": "1.0"}]', "not_an_envelope"),
    ("envelope version from the future", _doc(id="p2", conveyorversion=99), "unsupported_version"),
    ("envelope version not a number", _doc(id="p3", conveyorversion="1"), "unsupported_version"),
    ("time not an RFC 3339 timestamp", _doc(id="p4", time="yesterday"), "invalid_envelope"),
    ("broken traceparent", _doc(id="p5", traceparent="00-zz"), "invalid_envelope"),
    ("unknown job type", _doc(id="p6", type="fault.nope"), "unknown_job_type"),
    ("a job type of the other queue", _doc(id="p7", type="fault.slow"), "no_handler"),
    ("payload failing validation", _doc(id="p8", data={"label": 42}), "invalid_payload"),
    ("payload missing", _doc(id="p9", data=None), "invalid_payload"),
]


def test_poison_messages_are_dead_lettered_with_their_reason_and_nodes_carry_on(
    cluster: Cluster,
) -> None:
    # Claim checks that cannot be followed: the topology's own bucket, provisioned.
    bucket = claim_check_for(cluster.topology).bucket
    aws.client("s3").put_object(Bucket=bucket, Key="fault.note/c2.json", Body=b"{not json")
    poison = [
        *POISON,
        (
            "claim check to an object that does not exist (expired)",
            _doc(id="c1", data=None, dataref=f"s3://{bucket}/fault.note/c1.json"),
            "payload_missing",
        ),
        (
            "claim check to an object that is not JSON",
            _doc(id="c2", data=None, dataref=f"s3://{bucket}/fault.note/c2.json"),
            "invalid_payload_object",
        ),
        (
            "claim check outside the topology's bucket",
            _doc(id="c3", data=None, dataref="s3://someone-elses-bucket/secrets.json"),
            "invalid_dataref",
        ),
        (
            "claim check that is not an s3:// URI",
            _doc(id="c4", data=None, dataref="file:///etc/passwd"),
            "invalid_dataref",
        ),
    ]
    node = cluster.node("a")
    good_before = cluster.publish(notes("fault.note", size(20, 200), "before"))
    sqs = aws.client("sqs")
    url = cluster.url("alpha")
    bodies = [body for _, body, _ in poison]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    # A valid job, sent straight to the queue like the poison, to show the path itself works.
    direct = make_envelope("fault.note", {"label": "direct"})
    sqs.send_message(QueueUrl=url, MessageBody=encode(direct))
    good_after = cluster.publish(notes("fault.note", size(20, 200), "after"))

    tally = cluster.settle(
        "poison messages", [*good_before, direct.id, *good_after], poison=bodies, kinds=len(poison)
    )

    assert tally.lost == []
    assert tally.dead_lettered == len(poison)
    assert tally.duplicates == 0
    assert node.alive, node.text()  # the node was not hurt
    # Each poison message is in the DLQ once, byte for byte, with its reason, after one receive.
    cluster.assert_dead_lettered_once(poison, queue="alpha")
