"""The plan computed from a desired and a (fabricated) actual state: pure, no AWS."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from infra.provision.actual import ActualQueue, ActualState, ActualSubscription, ActualTopic
from infra.provision.compare import json_equal, parse_json, scalar_equal
from infra.provision.desired import DesiredState, desired_state
from infra.provision.diff import (
    CreateQueue,
    CreateTopic,
    DeleteQueue,
    DeleteTopic,
    SetQueueAttributes,
    SetSubscriptionAttributes,
    Stage,
    Step,
    Subscribe,
    TagQueue,
    Unsubscribe,
    apply_steps,
    destroy_steps,
)
from infra.provision.plan import Change, Plan
from infra.topology import load_topology

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "us-east-1"


@pytest.fixture
def desired(monkeypatch: pytest.MonkeyPatch) -> DesiredState:
    monkeypatch.delenv("CONVEYOR_ENVIRONMENT", raising=False)
    # Queues, topics and subscriptions only: tables and the bucket have their own tests
    # (test_provision_table, test_provision_bucket) and always come after them.
    state = desired_state(load_topology(REPO / "queues.yaml"), ACCOUNT, REGION)
    return replace(state, tables=[], buckets=[])


def _reserialised(document: str) -> str:
    """JSON as AWS may hand it back: other key order, whitespace, numbers as strings."""
    parsed = json.loads(document)

    def mangle(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mangle(v) for k, v in reversed(list(value.items()))}
        if isinstance(value, list):
            return [mangle(v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    return json.dumps(mangle(parsed), indent=1)


def applied(desired: DesiredState) -> ActualState:
    """The actual state right after a successful apply, as the emulator reports it."""
    state = ActualState()
    for q in desired.all_queues:
        attributes = {
            "QueueArn": q.arn,
            "ApproximateNumberOfMessages": "0",
            "CreatedTimestamp": "1700000000",
        }
        for key, value in q.attributes.items():
            if key == "RedriveAllowPolicy":
                continue  # moto does not report it
            attributes[key] = _reserialised(value) if key == "RedrivePolicy" else value
        if q.policy is not None:
            attributes["Policy"] = _reserialised(q.policy)
        state.queues[q.name] = ActualQueue(
            q.name, f"http://sqs/{ACCOUNT}/{q.name}", attributes, {**q.tags, "team": "x"}
        )
    for t in desired.topics:
        subs = [
            ActualSubscription(
                arn=f"{t.arn}:{i}",
                topic_arn=t.arn,
                protocol="sqs",
                endpoint=s.queue_arn,
                attributes={
                    "RawMessageDelivery": "true",
                    **{
                        k: (_reserialised(v) if k == "FilterPolicy" else v)
                        for k, v in s.attributes.items()
                        if k != "RawMessageDelivery"
                    },
                },
            )
            for i, s in enumerate(desired.subscriptions)
            if s.topic_arn == t.arn
        ]
        state.topics[t.name] = ActualTopic(t.name, t.arn, {"TopicArn": t.arn}, dict(t.tags), subs)
    return state


def _plan(steps: list[Step]) -> Plan:
    return Plan([s.change for s in steps if s.change is not None])


def _only(steps: list[Step]) -> Step:
    changed = [s for s in steps if s.change is not None]
    assert len(changed) == 1, _plan(steps).render()
    return changed[0]


def test_nothing_exists_everything_is_created_in_order(desired: DesiredState) -> None:
    steps = apply_steps(desired, ActualState())
    plan = _plan(steps)
    assert plan.render().splitlines() == [
        "+ dlq conveyor-dev-images-dlq",
        "+ dlq conveyor-dev-billing-dlq",
        "+ dlq conveyor-dev-notifications-dlq",
        "+ queue conveyor-dev-images",
        "+ queue conveyor-dev-billing",
        "+ queue conveyor-dev-notifications",
        "+ topic conveyor-dev-media",
        "+ topic conveyor-dev-orders",
        "+ subscription conveyor-dev-media → conveyor-dev-images",
        "+ subscription conveyor-dev-orders → conveyor-dev-billing",
        "+ subscription conveyor-dev-orders → conveyor-dev-notifications",
    ]
    stages = [s.stage for s in steps]
    assert stages == sorted(stages)
    kinds = [type(op) for s in steps for op in s.operations]
    assert (
        kinds == [CreateQueue] * 6 + [CreateTopic] * 2 + [SetQueueAttributes] * 3 + [Subscribe] * 3
    )
    # Queue policies are set after the topics, without a change of their own.
    policy_steps = [s for s in steps if s.stage == Stage.POLICY]
    assert all(s.change is None for s in policy_steps)
    created = next(op for s in steps for op in s.operations if isinstance(op, CreateQueue))
    assert "Policy" not in created.attributes
    assert plan.counts() == {"create": 11, "update": 0, "delete": 0, "note": 0}


def test_up_to_date_is_an_empty_plan_despite_reformatted_json(desired: DesiredState) -> None:
    steps = apply_steps(desired, applied(desired))
    assert steps == []
    assert _plan(steps).is_empty


def test_changed_attribute_is_one_update_that_keeps_the_policy(desired: DesiredState) -> None:
    actual = applied(desired)
    billing = actual.queues["conveyor-dev-billing"]
    billing.attributes["VisibilityTimeout"] = "30"
    step = _only(apply_steps(desired, actual))
    assert step.change == Change(
        "update",
        "queue",
        "conveyor-dev-billing",
        {"VisibilityTimeout": {"old": "30", "new": "120"}},
    )
    assert step.change.render() == "~ queue conveyor-dev-billing: VisibilityTimeout 30 → 120"
    [op] = step.operations
    assert isinstance(op, SetQueueAttributes)
    # The current policy rides along (moto drops a policy not re-sent).
    assert op.attributes == {"VisibilityTimeout": "120", "Policy": billing.attributes["Policy"]}


def test_missing_redrive_policy_is_drift(desired: DesiredState) -> None:
    actual = applied(desired)
    del actual.queues["conveyor-dev-images"].attributes["RedrivePolicy"]
    step = _only(apply_steps(desired, actual))
    assert step.change is not None
    assert step.change.details["RedrivePolicy"]["old"] is None
    assert step.change.details["RedrivePolicy"]["new"]["maxReceiveCount"] == 9


def test_different_redrive_allow_policy_is_drift_but_unreported_is_not(
    desired: DesiredState,
) -> None:
    actual = applied(desired)
    dlq = actual.queues["conveyor-dev-billing-dlq"]
    assert "RedriveAllowPolicy" not in dlq.attributes
    assert apply_steps(desired, actual) == []
    dlq.attributes["RedriveAllowPolicy"] = json.dumps({"redrivePermission": "allowAll"})
    step = _only(apply_steps(desired, actual))
    assert step.change is not None
    assert step.change.kind == "dlq"
    assert list(step.change.details) == ["RedriveAllowPolicy"]


def test_changed_policy_is_updated_in_the_policy_stage(desired: DesiredState) -> None:
    actual = applied(desired)
    del actual.queues["conveyor-dev-notifications"].attributes["Policy"]
    step = _only(apply_steps(desired, actual))
    assert step.stage == Stage.POLICY
    assert step.change is not None
    assert step.change.details["Policy"]["old"] is None
    [op] = step.operations
    assert isinstance(op, SetQueueAttributes)
    assert list(op.attributes) == ["Policy"]


def test_missing_tags_are_added(desired: DesiredState) -> None:
    actual = applied(desired)
    actual.queues["conveyor-dev-images"].tags.pop("conveyor:environment")
    step = _only(apply_steps(desired, actual))
    assert step.operations == (TagQueue("conveyor-dev-images", {"conveyor:environment": "dev"}),)


def test_subscription_filter_and_raw_delivery_drift(desired: DesiredState) -> None:
    actual = applied(desired)
    orders = actual.topics["conveyor-dev-orders"]
    billing = next(s for s in orders.subscriptions if s.endpoint.endswith(":conveyor-dev-billing"))
    assert billing.attributes is not None
    billing.attributes.update(
        RawMessageDelivery="false",
        FilterPolicy=json.dumps({"type": ["order.placed"]}),
    )
    del billing.attributes["FilterPolicyScope"]  # AWS's default: MessageAttributes
    step = _only(apply_steps(desired, actual))
    assert step.change is not None
    assert step.change.name == "conveyor-dev-orders → conveyor-dev-billing"
    assert step.change.details == {
        "RawMessageDelivery": {"old": "false", "new": "true"},
        "FilterPolicyScope": {"old": "MessageAttributes", "new": "MessageBody"},
        "FilterPolicy": {
            "old": {"type": ["order.placed"]},
            "new": {"type": ["invoice.render", "order.placed"]},
        },
    }
    [op] = step.operations
    assert isinstance(op, SetSubscriptionAttributes)
    assert [k for k, _ in op.attributes] == [
        "RawMessageDelivery",
        "FilterPolicyScope",
        "FilterPolicy",
    ]


def test_scope_change_alone_resets_the_policy_too(desired: DesiredState) -> None:
    actual = applied(desired)
    orders = actual.topics["conveyor-dev-orders"]
    sub = next(s for s in orders.subscriptions if s.endpoint.endswith("-notifications"))
    assert sub.attributes is not None
    sub.attributes["FilterPolicyScope"] = "MessageAttributes"
    step = _only(apply_steps(desired, actual))
    [op] = step.operations
    assert isinstance(op, SetSubscriptionAttributes)
    assert [k for k, _ in op.attributes] == ["FilterPolicyScope", "FilterPolicy"]


def test_unwanted_filter_policy_is_removed(desired: DesiredState) -> None:
    actual = applied(desired)
    [sub] = actual.topics["conveyor-dev-media"].subscriptions
    assert sub.attributes is not None
    sub.attributes.update(FilterPolicy='{"type":["image.resize"]}', FilterPolicyScope="MessageBody")
    step = _only(apply_steps(desired, actual))
    assert step.operations == (
        SetSubscriptionAttributes(step.operations[0].name, sub.arn, [("FilterPolicy", "{}")]),
    )
    # ... and once removed ("{}" or ""), it is no longer drift.
    for empty in ("{}", ""):
        sub.attributes["FilterPolicy"] = empty
        assert apply_steps(desired, actual) == []


def test_unexpected_and_foreign_subscriptions(desired: DesiredState) -> None:
    actual = applied(desired)
    media = actual.topics["conveyor-dev-media"]
    own = f"arn:aws:sqs:{REGION}:{ACCOUNT}:conveyor-dev-billing"  # declared, not on media
    stale = f"arn:aws:sqs:{REGION}:{ACCOUNT}:conveyor-dev-old-queue"  # our prefix
    foreign = f"arn:aws:sqs:{REGION}:{ACCOUNT}:analytics-intake"
    other_account = f"arn:aws:sqs:{REGION}:210987654321:conveyor-dev-images"
    media.subscriptions.extend(
        [
            ActualSubscription(f"{media.arn}:a", media.arn, "sqs", own),
            ActualSubscription(f"{media.arn}:b", media.arn, "sqs", stale),
            ActualSubscription(f"{media.arn}:c", media.arn, "sqs", foreign),
            ActualSubscription(f"{media.arn}:d", media.arn, "email", "ops@example.com"),
            ActualSubscription("PendingConfirmation", media.arn, "sqs", other_account),
        ]
    )
    steps = apply_steps(desired, actual)
    plan = _plan(steps)
    # Queues of this account and region are named, others show their ARN.
    assert plan.render().splitlines() == [
        "- subscription conveyor-dev-media → conveyor-dev-billing",
        "- subscription conveyor-dev-media → conveyor-dev-old-queue",
        "! subscription conveyor-dev-media → analytics-intake: not managed by Conveyor; left alone",
        "! subscription conveyor-dev-media → ops@example.com: not managed by Conveyor; left alone",
        "! subscription conveyor-dev-media → "
        + other_account
        + ": pending confirmation; not managed by Conveyor; left alone",
    ]
    ops = [op for s in steps for op in s.operations]
    assert [op.arn for op in ops if isinstance(op, Unsubscribe)] == [
        f"{media.arn}:a",
        f"{media.arn}:b",
    ]
    assert len(ops) == 2
    # Notes alone do not make a plan non-empty.
    assert not plan.is_empty
    assert Plan(plan.notes).is_empty


def test_fifo_flip_is_a_note_not_a_loop(desired: DesiredState) -> None:
    actual = applied(desired)
    # A FIFO twin of a declared standard queue exists (queues.yaml said fifo: true before).
    actual.other_flavours.add("conveyor-dev-billing.fifo")
    steps = apply_steps(desired, actual)
    step = _only(steps)
    assert step.change is not None
    assert step.change.action == "note"
    assert "destroy" in step.change.details["message"]
    assert step.operations == ()

    # The same name reporting the other FifoQueue setting (possible on the emulator).
    actual = applied(desired)
    queue = actual.queues["conveyor-dev-images"]
    actual.queues["conveyor-dev-images"] = replace(
        queue, attributes={**queue.attributes, "FifoQueue": "true", "VisibilityTimeout": "1"}
    )
    step = _only(apply_steps(desired, actual))
    assert step.change is not None
    assert step.change.action == "note"
    assert "FifoQueue cannot change" in step.change.details["message"]
    assert step.operations == ()


def test_destroy_deletes_subscriptions_topics_queues_then_dlqs(desired: DesiredState) -> None:
    actual = applied(desired)
    actual.queues["conveyor-dev-billing-dlq"].attributes["ApproximateNumberOfMessages"] = "3"
    media = actual.topics["conveyor-dev-media"]
    media.subscriptions.append(
        ActualSubscription(f"{media.arn}:x", media.arn, "lambda", "arn:aws:lambda:::function:f")
    )
    steps = destroy_steps(desired, actual)
    lines = _plan(steps).render().splitlines()
    assert lines == [
        "- subscription conveyor-dev-media → conveyor-dev-images",
        "! subscription conveyor-dev-media → arn:aws:lambda:::function:f:"
        " not managed by Conveyor; deleting the topic removes it too",
        "- subscription conveyor-dev-orders → conveyor-dev-billing",
        "- subscription conveyor-dev-orders → conveyor-dev-notifications",
        "- topic conveyor-dev-media",
        "- topic conveyor-dev-orders",
        "- queue conveyor-dev-images",
        "- queue conveyor-dev-billing",
        "- queue conveyor-dev-notifications",
        "- dlq conveyor-dev-images-dlq",
        "- dlq conveyor-dev-billing-dlq (holds 3 messages)",
        "- dlq conveyor-dev-notifications-dlq",
    ]
    ops = [op for s in steps for op in s.operations]
    assert sum(isinstance(op, DeleteTopic) for op in ops) == 2
    assert sum(isinstance(op, DeleteQueue) for op in ops) == 6
    assert destroy_steps(desired, ActualState()) == []


def test_plan_json_and_render() -> None:
    plan = Plan(
        [
            Change("create", "queue", "q"),
            Change("update", "queue", "r", {"RedrivePolicy": {"old": None, "new": {"a": 1}}}),
            Change("note", "subscription", "t → x", {"message": "left alone"}),
        ]
    )
    long_value = {"k": "v" * 200}
    plan = Plan(
        [*plan.changes, Change("update", "queue", "s", {"P": {"old": None, "new": long_value}})]
    )
    assert plan.render().splitlines()[:3] == [
        "+ queue q",
        '~ queue r: RedrivePolicy (none) → {"a":1}',
        "! subscription t → x: left alone",
    ]
    # Long values are cut in the human lines; the JSON keeps them whole.
    last = plan.render().splitlines()[3]
    assert last.startswith('~ queue s: P (none) → {"k":"vvv')
    assert last.endswith("…")
    assert len(last) < 130
    assert plan.to_json()["changes"][3]["details"]["P"]["new"] == long_value
    assert plan.summary() == "1 to create, 2 to update, 0 to delete"
    data = plan.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["is_empty"] is False
    assert data["counts"] == {"create": 1, "update": 2, "delete": 0, "note": 1}
    assert data["changes"][2] == {
        "action": "note",
        "kind": "subscription",
        "name": "t → x",
        "details": {"message": "left alone"},
    }
    assert Plan([]).summary() == "no changes: already up to date"


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ('{"a": 1, "b": [2, 3]}', '{"b": ["3", "2"], "a": "1"}', True),
        ('{"Action": ["sqs:SendMessage"]}', '{"Action": "sqs:SendMessage"}', True),
        ('{"a": true}', '{"a": "true"}', True),
        ("{}", None, True),
        ("", None, True),
        ('{"a": 1}', '{"a": 2}', False),
        ('{"a": 1}', None, False),
        ("not json", '{"a": 1}', False),
    ],
)
def test_json_equal(a: str, b: str | None, equal: bool) -> None:
    assert json_equal(a, b) is equal


def test_scalars() -> None:
    assert scalar_equal("30", 30)
    assert scalar_equal("True", "true")
    assert scalar_equal(True, "true")
    assert not scalar_equal("30", "31")
    assert parse_json("garbage") == "garbage"
