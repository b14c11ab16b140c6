"""The desired state computed from the sample queues.yaml: names, attributes, policies, filters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.aws.names import partition_of, sns_arn, sqs_arn
from infra.provision.desired import DesiredQueue, DesiredState, desired_state, seconds
from infra.topology import Topology, load_topology, parse_topology

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "eu-west-1"


@pytest.fixture
def topology(monkeypatch: pytest.MonkeyPatch) -> Topology:
    monkeypatch.delenv("CONVEYOR_ENVIRONMENT", raising=False)
    return load_topology(REPO / "queues.yaml")


@pytest.fixture
def state(topology: Topology) -> DesiredState:
    return desired_state(topology, ACCOUNT, REGION)


def _queue(state: DesiredState, key: str) -> DesiredQueue:
    return next(q for q in state.queues if q.key == key)


def _dlq(state: DesiredState, key: str) -> DesiredQueue:
    return next(q for q in state.dlqs if q.key == key)


def _arn(service: str, name: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{name}"


def test_names_and_arns(state: DesiredState) -> None:
    assert state.prefix == "conveyor-dev-"
    assert [t.name for t in state.topics] == ["conveyor-dev-media", "conveyor-dev-orders"]
    assert [q.name for q in state.queues] == [
        "conveyor-dev-images",
        "conveyor-dev-billing",
        "conveyor-dev-notifications",
    ]
    assert [q.name for q in state.dlqs] == [
        "conveyor-dev-images-dlq",
        "conveyor-dev-billing-dlq",
        "conveyor-dev-notifications-dlq",
    ]
    assert _queue(state, "billing").arn == _arn("sqs", "conveyor-dev-billing")
    assert state.topics[1].arn == _arn("sns", "conveyor-dev-orders")
    # DLQs are created first.
    assert [q.kind for q in state.all_queues] == ["dlq"] * 3 + ["queue"] * 3


def test_queue_attributes_are_integer_strings_with_long_polling(state: DesiredState) -> None:
    billing = _queue(state, "billing")
    assert billing.attributes["VisibilityTimeout"] == "120"
    assert billing.attributes["MessageRetentionPeriod"] == str(4 * 86400)
    assert billing.attributes["DelaySeconds"] == "0"
    assert billing.attributes["ReceiveMessageWaitTimeSeconds"] == "20"
    assert billing.attributes["SqsManagedSseEnabled"] == "true"
    assert "FifoQueue" not in billing.attributes  # AWS refuses FifoQueue=false
    assert _queue(state, "notifications").attributes["VisibilityTimeout"] == "30"
    assert billing.tags == {"conveyor:project": "conveyor", "conveyor:environment": "dev"}


def test_redrive_policy_points_at_the_dlq_with_the_topology_receive_count(
    state: DesiredState, topology: Topology
) -> None:
    for key in ("images", "billing", "notifications"):
        redrive = json.loads(_queue(state, key).attributes["RedrivePolicy"])
        assert redrive == {
            "deadLetterTargetArn": _dlq(state, key).arn,
            "maxReceiveCount": topology.max_receive_count(key),
        }
    # declared 6; images: largest budget 6 (image.thumbnail) + 3; notifications: 5 + 3
    assert json.loads(_queue(state, "billing").attributes["RedrivePolicy"])["maxReceiveCount"] == 6
    assert json.loads(_queue(state, "images").attributes["RedrivePolicy"])["maxReceiveCount"] == 9
    redrive = json.loads(_queue(state, "notifications").attributes["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 8


def test_dlq_attributes_allow_redrive_only_from_its_queue(state: DesiredState) -> None:
    dlq = _dlq(state, "billing")
    assert dlq.attributes["MessageRetentionPeriod"] == str(14 * 86400)
    assert dlq.attributes["SqsManagedSseEnabled"] == "true"
    assert json.loads(dlq.attributes["RedriveAllowPolicy"]) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [_queue(state, "billing").arn],
    }
    assert dlq.policy is None


def test_queue_policy_lets_only_its_subscribed_topics_send(state: DesiredState) -> None:
    billing = _queue(state, "billing")
    assert billing.policy is not None
    policy: dict[str, Any] = json.loads(billing.policy)
    assert policy["Version"] == "2012-10-17"
    [statement, tls] = policy["Statement"]
    assert tls == {
        "Sid": "ConveyorDenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sqs:*",
        "Resource": billing.arn,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == billing.arn
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": [_arn("sns", "conveyor-dev-orders")]}
    }
    images = json.loads(_queue(state, "images").policy or "{}")
    assert images["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        _arn("sns", "conveyor-dev-media")
    ]


def test_subscriptions_use_raw_delivery_and_body_filters_on_the_job_type(
    state: DesiredState,
) -> None:
    subs = {s.queue_key: s for s in state.subscriptions}
    assert set(subs) == {"images", "billing", "notifications"}

    billing = subs["billing"]
    assert billing.name == "conveyor-dev-orders → conveyor-dev-billing"
    assert billing.topic_arn == _arn("sns", "conveyor-dev-orders")
    assert billing.queue_arn == _arn("sqs", "conveyor-dev-billing")
    assert billing.filter_policy == {"type": ["invoice.render", "order.placed"]}
    assert list(billing.attributes) == ["RawMessageDelivery", "FilterPolicyScope", "FilterPolicy"]
    assert billing.attributes["RawMessageDelivery"] == "true"
    assert billing.attributes["FilterPolicyScope"] == "MessageBody"
    assert json.loads(billing.attributes["FilterPolicy"]) == {
        "type": ["invoice.render", "order.placed"]
    }
    assert subs["notifications"].filter_policy == {"type": ["email.send", "order.placed"]}

    # No job_types: every job of the topic, so no filter policy at all.
    images = subs["images"]
    assert images.filter_policy is None
    assert images.attributes == {"RawMessageDelivery": "true"}


def test_owns_queue_arn(state: DesiredState) -> None:
    assert state.owns_queue_arn(_arn("sqs", "conveyor-dev-billing"))
    assert state.owns_queue_arn(_arn("sqs", "conveyor-dev-removed-queue"))  # same prefix
    assert not state.owns_queue_arn(_arn("sqs", "conveyor-prod-billing"))
    assert not state.owns_queue_arn(_arn("sqs", "someone-else"))
    other_account = f"arn:aws:sqs:{REGION}:999999999999:conveyor-dev-billing"
    assert not state.owns_queue_arn(other_account)
    assert not state.owns_queue_arn(f"arn:aws:sqs:us-east-1:{ACCOUNT}:conveyor-dev-billing")
    assert not state.owns_queue_arn(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:conveyor-dev-x")
    assert not state.owns_queue_arn("someone@example.com")


FIFO_YAML = """
version: 1
project: shop
environment: test
topics:
  ledger: {fifo: true, content_based_deduplication: true}
queues:
  entries:
    fifo: true
    visibility_timeout_s: 1.5
    delay_s: 10s
    subscriptions: [{topic: ledger}]
job_types:
  ledger.entry: {topic: ledger, payload: "m:P", handler: "m:h"}
"""


def test_fifo_topology() -> None:
    state = desired_state(parse_topology(FIFO_YAML), ACCOUNT, REGION)
    [topic] = state.topics
    assert topic.name == "shop-test-ledger.fifo"
    assert topic.attributes == {"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    assert topic.other_flavour_name == "shop-test-ledger"
    [queue] = state.queues
    assert queue.name == "shop-test-entries.fifo"
    assert queue.attributes["FifoQueue"] == "true"
    assert queue.attributes["ContentBasedDeduplication"] == "false"
    assert queue.attributes["VisibilityTimeout"] == "2"  # rounded up to whole seconds
    assert queue.attributes["DelaySeconds"] == "10"
    [dlq] = state.dlqs
    assert dlq.name == "shop-test-entries-dlq.fifo"
    assert dlq.attributes["FifoQueue"] == "true"
    assert dlq.other_flavour_name == "shop-test-entries-dlq"


def test_helpers() -> None:
    assert seconds(120.0) == "120"
    assert seconds(0.2) == "1"
    assert partition_of("cn-north-1") == "aws-cn"
    assert partition_of("us-gov-west-1") == "aws-us-gov"
    assert sqs_arn("cn-north-1", ACCOUNT, "q") == f"arn:aws-cn:sqs:cn-north-1:{ACCOUNT}:q"
    assert sns_arn("us-east-1", ACCOUNT, "t") == f"arn:aws:sns:us-east-1:{ACCOUNT}:t"
