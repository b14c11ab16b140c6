"""Property-based tests of the consumer boundary: whatever arrives, a message becomes a job
or a dead-letter decision with a known reason and its body unchanged; nothing raises.

Driven through what the consumers call: :func:`workers.intake.read_job` (the transport's
routing, the runner), :meth:`workers.runner.JobRunner.run` (the pool and AWS Lambda),
:func:`workers.lambda_adapter.read_record` (a Lambda record) and
:func:`workers.dead_letter.dead_letter_request` (the DLQ write). Example counts are
bounded (``make test``); ``CONVEYOR_FAULTS=full`` (``make faults``) runs more.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from conveyor import JobContext
from infra.claim_check import ClaimCheck
from infra.envelope import MAX_JSON_DEPTH, Envelope, decode, encode, make_envelope
from infra.failure import REASONS
from infra.topology import Topology, load_topology
from tests.faults.harness import size
from workers.dead_letter import dead_letter_request
from workers.intake import Refusal, read_job
from workers.lambda_adapter import read_record
from workers.runner import JobRunner
from workers.transport import _peek, _plain_message

FUZZ = settings(
    max_examples=size(150, 2000),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

TOPOLOGY = """
version: 1
project: fz
environment: fuzz
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs, job_types: [fuzz.note]}]
job_types:
  fuzz.note:
    topic: jobs
    payload: "tests.fuzz.test_consumer_boundary_fuzz:Note"
    handler: "tests.fuzz.test_consumer_boundary_fuzz:accept"
"""


class Note(BaseModel):
    """Any object with a string label."""

    label: str


def accept(payload: Note, ctx: JobContext) -> None:
    """A handler that always succeeds (the boundary, not the handler, is under test)."""


# -- strategies -----------------------------------------------------------------------------

#: Any code point, lone surrogates included (hypothesis leaves them out by default).
any_text = st.text(st.characters(blacklist_categories=()), max_size=200)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | any_text
    | st.integers(min_value=10**300, max_value=10**1000)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(any_text, inner, max_size=5),
    max_leaves=20,
)


def _json_text(value: Any) -> str:
    # ensure_ascii: lone surrogates travel as \\udXXX escapes, as they can on a queue.
    return json.dumps(value)


@st.composite
def deep(draw: st.DrawFn) -> str:
    """Arrays/objects nested around and beyond the limit and the json module's recursion."""
    depth = draw(st.sampled_from([MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 1, 1_200, 5_000, 50_000]))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    inner = opener * depth + "1" + closer * depth
    if draw(st.booleans()):  # inside a job's data
        return '{"specversion":"1.0","id":"d","type":"fuzz.note","data":' + inner + "}"
    return inner


huge_numbers = st.integers(min_value=1, max_value=6_000).map(
    lambda n: '{"specversion":"1.0","id":"n","type":"fuzz.note","data":{"label":' + "9" * n + "}}"
)
wide = st.integers(min_value=1, max_value=20_000).map(lambda n: "[" + ",".join(["0"] * n) + "]")
lone_surrogates = st.sampled_from(["\\ud800", "\\udfff", "\\udc80x", "\\ud83d"]).map(
    lambda s: (
        '{"specversion":"1.0","id":"' + s + '","type":"fuzz.note","data":{"label":"' + s + '"}}'
    )
)


@st.composite
def envelope_docs(draw: st.DrawFn) -> str:
    """A valid job with fields replaced, removed or added (extensions, data_base64 …)."""
    doc: dict[str, Any] = json.loads(encode(make_envelope("fuzz.note", {"label": "x"})))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(
            st.sampled_from(
                [
                    "specversion",
                    "id",
                    "type",
                    "source",
                    "time",
                    "datacontenttype",
                    "dataschema",
                    "subject",
                    "conveyorversion",
                    "data",
                    "data_base64",
                    "traceparent",
                    "dataref",
                    "anextension",
                ]
            )
        )
        if draw(st.booleans()):
            doc.pop(name, None)
        elif name == "data_base64" and draw(st.booleans()):
            doc.pop("data", None)
            doc[name] = base64.b64encode(draw(st.binary(max_size=60))).decode()
        else:
            doc[name] = draw(json_values)
    return _json_text(doc)


bodies = (
    any_text
    | st.binary(max_size=200)
    | json_values.map(_json_text)
    | deep()
    | huge_numbers
    | wide
    | lone_surrogates
    | envelope_docs()
)
message_attributes = st.dictionaries(
    any_text,
    st.fixed_dictionaries(
        {"DataType": st.sampled_from(["String", "Number", "Binary", "String.x"]) | any_text},
        optional={"StringValue": any_text, "BinaryValue": st.binary(max_size=20)},
    ),
    max_size=12,
)
system_attributes = st.dictionaries(
    st.sampled_from(
        ["ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"]
    ),
    st.integers().map(str) | any_text,
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """An SQS API-shaped message, as ReceiveMessage returns it."""
    return {
        "MessageId": draw(st.uuids()).hex,
        "ReceiptHandle": "rh",
        "Body": draw(bodies),
        "Attributes": draw(system_attributes),
        "MessageAttributes": draw(message_attributes),
    }


lambda_attribute = st.fixed_dictionaries(
    {"dataType": st.sampled_from(["String", "Binary"]) | any_text},
    optional={
        "stringValue": any_text,
        "binaryValue": st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode())
        | any_text,
        "stringListValues": st.just([]),
    },
)


@st.composite
def lambda_records(draw: st.DrawFn) -> dict[str, Any]:
    """A record of Lambda's SQS event, hostile attributes included."""
    return {
        "messageId": draw(st.uuids()).hex,
        "receiptHandle": "rh",
        "body": draw(bodies.filter(lambda b: isinstance(b, str))),
        "attributes": draw(system_attributes),
        "messageAttributes": draw(st.dictionaries(any_text, lambda_attribute, max_size=5)),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:fz-fuzz-work",
        "awsRegion": "us-east-1",
    }


# -- the properties ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    path = tmp_path_factory.mktemp("fuzz") / "queues.yaml"
    path.write_text(TOPOLOGY)
    return load_topology(path)


@pytest.fixture(scope="module")
def runner(topology: Topology) -> JobRunner:
    # A bucket name given: no account lookup; a fuzzed dataref is never of its prefix.
    claim_check = ClaimCheck(topology, bucket="fz-fuzz-payloads-000000000000-us-east-1")
    return JobRunner(topology, ["work"], hooks=(), rng=random.Random(1), claim_check=claim_check)


def _checked(read: Envelope | Refusal) -> None:
    if isinstance(read, Refusal):
        assert read.reason in REASONS, read.reason
        assert str(read.error) or read.reason == "too_deep", read


@FUZZ
@given(messages())
def test_read_job_gives_a_job_or_a_reason_never_an_exception(message: dict[str, Any]) -> None:
    _checked(read_job(message))


@FUZZ
@given(deep())
def test_deep_bodies_are_refused_before_the_decoder_recurses(body: str) -> None:
    read = read_job({"Body": body})
    nesting = body.count("[") + body.count("{") - (1 if body.startswith('{"spec') else 0)
    if nesting > MAX_JSON_DEPTH:
        assert isinstance(read, Refusal)
        assert read.reason == "too_deep", read


@FUZZ
@given(messages())
def test_the_runner_ends_every_message_in_an_outcome_the_dlq_can_take(
    runner: JobRunner, message: dict[str, Any]
) -> None:
    outcome = runner.run(message, "work")
    assert outcome.kind in ("succeeded", "dead_letter"), outcome
    if outcome.kind == "dead_letter":
        assert outcome.failure is not None
        assert outcome.failure.reason in REASONS
        assert outcome.failure.attempts >= 1
        request = dead_letter_request(message, outcome.failure, dlq_url="u", fifo=False)
        assert request["MessageBody"] is message["Body"]  # unchanged, byte for byte
        json.dumps(request["MessageAttributes"]["conveyor.failure"])  # a String attribute
    else:
        assert isinstance(read_job(message), Envelope)


@FUZZ
@given(messages())
def test_the_transport_routes_every_message_without_raising(message: dict[str, Any]) -> None:
    if isinstance(message["Body"], bytes):  # boto3's ReceiveMessage gives str bodies
        message["Body"] = message["Body"].decode("latin-1")
    plain = _plain_message(message)
    json.dumps(plain)  # it travels to the pool as JSON
    job_id, job_type = _peek(plain)
    read = read_job(plain)
    assert (job_id, job_type) == (
        (read.id, read.type) if isinstance(read, Envelope) else (None, None)
    )


@FUZZ
@given(lambda_records())
def test_a_lambda_record_becomes_a_job_or_a_dead_letter(
    runner: JobRunner, record: dict[str, Any]
) -> None:
    message, refusal = read_record(record)
    assert message["Body"] == record["body"]
    outcome = runner.run(message, "work", refusal=refusal)
    assert outcome.kind in ("succeeded", "dead_letter"), outcome
    if refusal is not None:
        assert outcome.failure is not None
        assert outcome.failure.reason == "undecodable"


@FUZZ
@given(envelope_docs())
def test_an_event_without_time_or_conveyorversion_reads_when_the_rest_is_valid(body: str) -> None:
    doc = json.loads(body)
    for optional in ("time", "conveyorversion", "datacontenttype", "traceparent"):
        doc.pop(optional, None)
    read = read_job({"Body": json.dumps(doc)})
    if isinstance(read, Envelope):
        assert read.time is None
        assert encode(decode(encode(read))) == encode(read)
