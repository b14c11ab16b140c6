"""The plan as steps: compare desired with actual state and say what to do, in which order.

Pure (no AWS calls): :func:`apply_steps` and :func:`destroy_steps` take the two
states and return :class:`Step` objects — the :class:`Change` shown to the user
and the operations :mod:`infra.provision.apply` runs for it. Tables are compared
in :mod:`infra.provision.tables`; their changes come last in both orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from infra.provision.actual import ActualQueue, ActualState, ActualSubscription, ActualTopic
from infra.provision.buckets import (
    BucketChange,
    BucketOperation,
    bucket_changes,
    bucket_deletion,
)
from infra.provision.compare import is_true, json_equal, parse_json, scalar_equal, tag_diffs
from infra.provision.desired import (
    DesiredQueue,
    DesiredState,
    DesiredSubscription,
    DesiredTopic,
    dumps,
)
from infra.provision.plan import Change
from infra.provision.tables import (
    CreateTable,
    DeleteTable,
    EnableTimeToLive,
    SetBillingMode,
    TableChange,
    TagTable,
    table_changes,
    table_deletion,
)

#: Attributes holding JSON documents, compared parsed.
JSON_ATTRIBUTES = frozenset({"Policy", "RedrivePolicy", "RedriveAllowPolicy", "FilterPolicy"})

#: moto (5.2.5) accepts RedriveAllowPolicy but never stores or reports it. An attribute
#: the endpoint does not report at all cannot be compared: it is not drift. This is the
#: only attribute treated so; a missing RedrivePolicy or Policy is drift. (On AWS an
#: unset RedriveAllowPolicy is also unreported, so one removed out of band goes unseen.)
UNREPORTED_IS_UNKNOWN = frozenset({"RedriveAllowPolicy"})

#: Managed but immutable: a change needs a new resource (and, for FIFO, a new name).
IMMUTABLE = frozenset({"FifoQueue", "FifoTopic"})


class Stage(IntEnum):
    """The order apply runs in: what a later stage refers to exists by then."""

    DLQ = 0
    QUEUE = 1
    TOPIC = 2
    POLICY = 3
    SUBSCRIPTION = 4
    TABLE = 5
    BUCKET = 6


class DestroyStage(IntEnum):
    """The order destroy runs in: nothing is deleted while something still points at it."""

    SUBSCRIPTION = 0
    TOPIC = 1
    QUEUE = 2
    DLQ = 3
    TABLE = 4
    BUCKET = 5


# -- operations ------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateQueue:
    name: str
    attributes: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True)
class SetQueueAttributes:
    name: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class TagQueue:
    name: str
    tags: dict[str, str]


@dataclass(frozen=True)
class DeleteQueue:
    name: str


@dataclass(frozen=True)
class CreateTopic:
    name: str
    attributes: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True)
class SetTopicAttributes:
    name: str
    arn: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class TagTopic:
    name: str
    arn: str
    tags: dict[str, str]


@dataclass(frozen=True)
class DeleteTopic:
    name: str
    arn: str


@dataclass(frozen=True)
class Subscribe:
    name: str
    topic_arn: str
    endpoint: str
    #: In the order they must be set: FilterPolicyScope before FilterPolicy.
    attributes: dict[str, str]


@dataclass(frozen=True)
class SetSubscriptionAttributes:
    name: str
    arn: str
    #: Set one by one, in order.
    attributes: list[tuple[str, str]]


@dataclass(frozen=True)
class Unsubscribe:
    name: str
    arn: str


Operation = (
    CreateQueue
    | SetQueueAttributes
    | TagQueue
    | DeleteQueue
    | CreateTopic
    | SetTopicAttributes
    | TagTopic
    | DeleteTopic
    | Subscribe
    | SetSubscriptionAttributes
    | Unsubscribe
    | CreateTable
    | SetBillingMode
    | EnableTimeToLive
    | TagTable
    | DeleteTable
    | BucketOperation
)


@dataclass(frozen=True)
class Step:
    """What to run at ``stage`` and the change it makes (``None``: part of another change)."""

    stage: int
    change: Change | None
    operations: tuple[Operation, ...] = field(default_factory=tuple)


def ordered(steps: list[Step]) -> list[Step]:
    """Steps by stage, keeping the declared order within a stage."""
    return sorted(steps, key=lambda s: s.stage)


def _table_steps(stage: int, changes: list[TableChange] | list[BucketChange]) -> list[Step]:
    return [Step(stage, change, operations) for change, operations in changes]


# -- helpers ---------------------------------------------------------------------------


def _shown(key: str, value: str | None) -> Any:
    """An attribute value as shown in a change: JSON parsed, so it reads (and serialises) well."""
    return parse_json(value) if key in JSON_ATTRIBUTES else value


def attribute_diffs(
    desired: dict[str, str], actual: dict[str, str]
) -> dict[str, tuple[str | None, str]]:
    """``{attribute: (actual, desired)}`` for each managed attribute that differs."""
    diffs: dict[str, tuple[str | None, str]] = {}
    for key, want in desired.items():
        if key in IMMUTABLE:
            continue
        have = actual.get(key)
        if key in JSON_ATTRIBUTES:
            if have is None and key in UNREPORTED_IS_UNKNOWN:
                continue
            if json_equal(want, have):
                continue
        elif have is not None and scalar_equal(want, have):
            continue
        diffs[key] = (have, want)
    return diffs


def _details(
    attributes: dict[str, tuple[str | None, str]], tags: dict[str, tuple[str | None, str]]
) -> dict[str, Any]:
    details: dict[str, Any] = {
        key: {"old": _shown(key, old), "new": _shown(key, new)}
        for key, (old, new) in attributes.items()
    }
    details.update({f"tag:{k}": {"old": old, "new": new} for k, (old, new) in tags.items()})
    return details


def _flavour(fifo: bool) -> str:
    return "FIFO" if fifo else "standard"


def _other_flavour_note(kind: str, name: str, fifo: bool, other: str) -> str:
    return (
        f"declared {_flavour(fifo)}, but {other} exists as a {_flavour(not fifo)} {kind}:"
        f" FIFO cannot change on an existing {kind}, so {name} is a new {kind} and {other}"
        " is no longer managed; delete it (run `conveyor infra destroy` with the previous"
        " queues.yaml) once it is drained"
    )


def _immutable_note(kind: str, attribute: str, fifo: bool) -> str:
    return (
        f"exists as a {_flavour(not fifo)} {kind} but is declared {_flavour(fifo)}:"
        f" {attribute} cannot change on an existing {kind}; left unchanged —"
        " run `conveyor infra destroy`, then `conveyor infra apply`"
    )


# -- apply -----------------------------------------------------------------------------


def _queue_steps(dq: DesiredQueue, actual: ActualState) -> list[Step]:
    stage = Stage.DLQ if dq.kind == "dlq" else Stage.QUEUE
    kind = dq.kind
    steps: list[Step] = []
    if dq.other_flavour_name in actual.other_flavours:
        note = _other_flavour_note("queue", dq.name, dq.fifo, dq.other_flavour_name)
        steps.append(Step(stage, Change("note", kind, dq.name, {"message": note})))

    found = actual.queues.get(dq.name)
    if found is None:
        steps.append(
            Step(
                stage,
                Change("create", kind, dq.name),
                (CreateQueue(dq.name, dq.attributes, dq.tags),),
            )
        )
        if dq.policy is not None:
            steps.append(
                Step(Stage.POLICY, None, (SetQueueAttributes(dq.name, {"Policy": dq.policy}),))
            )
        return steps

    if is_true(found.attributes.get("FifoQueue")) != dq.fifo:
        note = _immutable_note("queue", "FifoQueue", dq.fifo)
        steps.append(Step(stage, Change("note", kind, dq.name, {"message": note})))
        return steps

    attributes = attribute_diffs(dq.attributes, found.attributes)
    tags = tag_diffs(dq.tags, found.tags)
    if attributes or tags:
        operations: list[Operation] = []
        if attributes:
            new = {key: want for key, (_, want) in attributes.items()}
            # moto quirk: SetQueueAttributes without a Policy *removes* the queue's policy
            # (Queue._set_attributes assigns `attributes.get("Policy")`). Re-sending the
            # current one keeps it, and is a no-op on AWS. The policy stage then sets the
            # desired policy if that differs.
            if "Policy" not in new and found.attributes.get("Policy"):
                new["Policy"] = found.attributes["Policy"]
            operations.append(SetQueueAttributes(dq.name, new))
        if tags:
            operations.append(TagQueue(dq.name, {k: want for k, (_, want) in tags.items()}))
        steps.append(
            Step(
                stage,
                Change("update", kind, dq.name, _details(attributes, tags)),
                tuple(operations),
            )
        )

    if dq.policy is not None and not json_equal(dq.policy, found.attributes.get("Policy")):
        policy = {"Policy": (found.attributes.get("Policy"), dq.policy)}
        steps.append(
            Step(
                Stage.POLICY,
                Change("update", kind, dq.name, _details(policy, {})),
                (SetQueueAttributes(dq.name, {"Policy": dq.policy}),),
            )
        )
    return steps


def _topic_steps(dt: DesiredTopic, actual: ActualState) -> list[Step]:
    steps: list[Step] = []
    if dt.other_flavour_name in actual.other_flavours:
        note = _other_flavour_note("topic", dt.name, dt.fifo, dt.other_flavour_name)
        steps.append(Step(Stage.TOPIC, Change("note", "topic", dt.name, {"message": note})))
    found = actual.topics.get(dt.name)
    if found is None:
        steps.append(
            Step(
                Stage.TOPIC,
                Change("create", "topic", dt.name),
                (CreateTopic(dt.name, dt.attributes, dt.tags),),
            )
        )
        return steps
    # AWS reports FifoTopic only for FIFO topics; missing means standard.
    if is_true(found.attributes.get("FifoTopic")) != dt.fifo:
        note = _immutable_note("topic", "FifoTopic", dt.fifo)
        steps.append(Step(Stage.TOPIC, Change("note", "topic", dt.name, {"message": note})))
        return steps
    attributes = attribute_diffs(dt.attributes, found.attributes)
    tags = tag_diffs(dt.tags, found.tags)
    if attributes or tags:
        operations: list[Operation] = []
        if attributes:
            new = {key: want for key, (_, want) in attributes.items()}
            operations.append(SetTopicAttributes(dt.name, dt.arn, new))
        if tags:
            new_tags = {k: want for k, (_, want) in tags.items()}
            operations.append(TagTopic(dt.name, dt.arn, new_tags))
        steps.append(
            Step(
                Stage.TOPIC,
                Change("update", "topic", dt.name, _details(attributes, tags)),
                tuple(operations),
            )
        )
    return steps


def subscription_updates(
    ds: DesiredSubscription, attributes: dict[str, str]
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The attributes to set (in order) on an existing subscription, and the change details."""
    to_set: list[tuple[str, str]] = []
    details: dict[str, Any] = {}
    have_raw = attributes.get("RawMessageDelivery", "false")
    if not is_true(have_raw):
        to_set.append(("RawMessageDelivery", "true"))
        details["RawMessageDelivery"] = {"old": have_raw, "new": "true"}

    have_policy = parse_json(attributes.get("FilterPolicy"))
    # AWS reports no scope without a policy, and defaults it to MessageAttributes with one;
    # moto (5.2.5) does the same in get_subscription_attributes.
    have_scope = attributes.get("FilterPolicyScope") or (
        "MessageAttributes" if have_policy is not None else None
    )
    if ds.filter_policy is None:
        if have_policy is not None:
            # An empty document removes a subscription's filter policy.
            to_set.append(("FilterPolicy", "{}"))
            details["FilterPolicy"] = {"old": have_policy, "new": None}
        return to_set, details

    want_policy = dumps(ds.filter_policy)
    scope_changes = have_scope != "MessageBody"
    if scope_changes:
        to_set.append(("FilterPolicyScope", "MessageBody"))
        details["FilterPolicyScope"] = {"old": have_scope, "new": "MessageBody"}
    if scope_changes or not json_equal(want_policy, attributes.get("FilterPolicy")):
        # Always (re)set the policy after its scope: AWS validates a policy against the
        # scope, and moto builds its matcher only when FilterPolicy is set, with the scope
        # of that moment — changing the scope alone would keep matching the old way.
        to_set.append(("FilterPolicy", want_policy))
        if not json_equal(want_policy, attributes.get("FilterPolicy")):
            details["FilterPolicy"] = {"old": have_policy, "new": ds.filter_policy}
    return to_set, details


def _foreign_note(sub: ActualSubscription, *, on_destroy: bool = False) -> str:
    if sub.pending:
        return "pending confirmation; not managed by Conveyor; left alone"
    if on_destroy:
        return "not managed by Conveyor; deleting the topic removes it too"
    return "not managed by Conveyor; left alone"


def _sub_name(desired: DesiredState, topic: ActualTopic, sub: ActualSubscription) -> str:
    """``<topic> → <queue name>`` for queues of this account and region, else the endpoint."""
    endpoint = sub.endpoint or sub.protocol
    parts = endpoint.split(":", 5)
    if len(parts) == 6 and parts[2] == "sqs" and parts[3:5] == [desired.region, desired.account]:
        endpoint = parts[5]
    return f"{topic.name} → {endpoint}"


def _subscription_steps(desired: DesiredState, actual: ActualState) -> list[Step]:
    steps: list[Step] = []
    declared: set[tuple[str, str]] = set()
    for ds in desired.subscriptions:
        declared.add((ds.topic_arn, ds.queue_arn))
        topic = actual.topics.get(ds.topic_name)
        found = None
        if topic is not None:
            found = next(
                (
                    s
                    for s in topic.subscriptions
                    if s.protocol == "sqs" and s.endpoint == ds.queue_arn and not s.pending
                ),
                None,
            )
        if found is None:
            steps.append(
                Step(
                    Stage.SUBSCRIPTION,
                    Change("create", "subscription", ds.name),
                    (Subscribe(ds.name, ds.topic_arn, ds.queue_arn, ds.attributes),),
                )
            )
            continue
        if found.attributes is None:
            continue  # attributes are read for every declared endpoint; gone while we looked
        to_set, details = subscription_updates(ds, found.attributes)
        if to_set:
            steps.append(
                Step(
                    Stage.SUBSCRIPTION,
                    Change("update", "subscription", ds.name, details),
                    (SetSubscriptionAttributes(ds.name, found.arn, to_set),),
                )
            )

    for dt in desired.topics:
        topic = actual.topics.get(dt.name)
        if topic is None:
            continue
        for sub in topic.subscriptions:
            if sub.protocol == "sqs" and (topic.arn, sub.endpoint) in declared and not sub.pending:
                continue
            name = _sub_name(desired, topic, sub)
            if sub.protocol == "sqs" and desired.owns_queue_arn(sub.endpoint) and not sub.pending:
                steps.append(
                    Step(
                        Stage.SUBSCRIPTION,
                        Change("delete", "subscription", name, {"reason": "not declared"}),
                        (Unsubscribe(name, sub.arn),),
                    )
                )
            else:
                message = _foreign_note(sub)
                steps.append(
                    Step(
                        Stage.SUBSCRIPTION,
                        Change("note", "subscription", name, {"message": message}),
                    )
                )
    return steps


def apply_steps(desired: DesiredState, actual: ActualState) -> list[Step]:
    """Everything apply would do, in the order it does it."""
    steps: list[Step] = []
    for dq in desired.all_queues:
        steps += _queue_steps(dq, actual)
    for dt in desired.topics:
        steps += _topic_steps(dt, actual)
    steps += _subscription_steps(desired, actual)
    for table in desired.tables:
        steps += _table_steps(Stage.TABLE, table_changes(table, actual.tables.get(table.name)))
    for bucket in desired.buckets:
        found = actual.buckets.get(bucket.name)
        steps += _table_steps(Stage.BUCKET, bucket_changes(bucket, found))
    return ordered(steps)


# -- destroy ---------------------------------------------------------------------------


def destroy_steps(desired: DesiredState, actual: ActualState) -> list[Step]:
    """Everything destroy would delete: declared resources that exist, and subscriptions to them."""
    steps: list[Step] = []
    for dt in desired.topics:
        topic = actual.topics.get(dt.name)
        if topic is None:
            continue
        for sub in topic.subscriptions:
            name = _sub_name(desired, topic, sub)
            if sub.protocol == "sqs" and desired.owns_queue_arn(sub.endpoint) and not sub.pending:
                steps.append(
                    Step(
                        DestroyStage.SUBSCRIPTION,
                        Change("delete", "subscription", name),
                        (Unsubscribe(name, sub.arn),),
                    )
                )
            else:
                message = _foreign_note(sub, on_destroy=True)
                steps.append(
                    Step(
                        DestroyStage.SUBSCRIPTION,
                        Change("note", "subscription", name, {"message": message}),
                    )
                )
        steps.append(
            Step(
                DestroyStage.TOPIC,
                Change("delete", "topic", dt.name),
                (DeleteTopic(dt.name, dt.arn),),
            )
        )
    for dq in [*desired.queues, *desired.dlqs]:
        found: ActualQueue | None = actual.queues.get(dq.name)
        if found is None:
            continue
        stage = DestroyStage.QUEUE if dq.kind == "queue" else DestroyStage.DLQ
        kind = dq.kind
        count = found.message_count
        details = {"messages": count} if count else {}
        steps.append(Step(stage, Change("delete", kind, dq.name, details), (DeleteQueue(dq.name),)))
    for table in desired.tables:
        found_table = actual.tables.get(table.name)
        steps += _table_steps(DestroyStage.TABLE, table_deletion(table, found_table))
    for bucket in desired.buckets:
        found_bucket = actual.buckets.get(bucket.name)
        steps += _table_steps(DestroyStage.BUCKET, bucket_deletion(bucket, found_bucket))
    return ordered(steps)
