"""The desired state of a topology: every topic, queue, DLQ, subscription and table, configured.

Pure computation from a :class:`~infra.topology.Topology`, an account id and a
region — no AWS calls — so it can be unit-tested and shown before anything exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from infra.aws.names import (
    IDEMPOTENCY_TABLE,
    LEDGER_TABLE,
    PAYLOAD_BUCKET,
    SUCCEEDED_TABLE,
    TABLE_BILLING_MODE,
    TABLE_PARTITION_KEY,
    TABLE_SORT_KEY,
    TABLE_TTL_ATTRIBUTE,
    TIMERS_TABLE,
    dynamodb_table_arn,
    guarded_job_types,
    ledger_table_name,
    partition_of,
    payload_bucket_name,
    s3_bucket_arn,
    sns_arn,
    sqs_arn,
    succeeded_table_name,
    timers_table_name,
)
from infra.timers import DUE_BUCKET_ATTRIBUTE, DUE_INDEX, DUE_SORT_ATTRIBUTE
from infra.topology import Topology

#: Long polling by default: a receive waits up to 20 s (the AWS maximum) for a message.
RECEIVE_WAIT_S = 20
TAG_PROJECT = "conveyor:project"
TAG_ENVIRONMENT = "conveyor:environment"
POLICY_SID = "ConveyorTopicsSendMessage"
TLS_SID = "ConveyorDenyInsecureTransport"


def seconds(value: float) -> str:
    """A model duration as the integer string SQS wants (rounded up, never below the model)."""
    return str(math.ceil(value))


def dumps(document: Any) -> str:
    """JSON for an attribute value, stable and compact."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class DesiredQueue:
    """A queue or dead-letter queue and the attributes Conveyor manages on it."""

    key: str  # the queue's name in queues.yaml (a DLQ carries its queue's key)
    kind: Literal["queue", "dlq"]
    name: str
    arn: str
    fifo: bool
    #: Attributes set at creation and kept in sync (everything but the queue policy).
    attributes: dict[str, str]
    #: The queue policy (JSON); set after the topics exist. ``None``: not managed.
    policy: str | None
    tags: dict[str, str]
    #: The name the queue would have with the other FIFO setting (to detect a FIFO flip).
    other_flavour_name: str


@dataclass(frozen=True)
class DesiredTopic:
    """An SNS topic."""

    key: str
    name: str
    arn: str
    fifo: bool
    #: Creation attributes (FIFO topics only); ``ContentBasedDeduplication`` is kept in sync.
    attributes: dict[str, str]
    tags: dict[str, str]
    other_flavour_name: str


@dataclass(frozen=True)
class DesiredSubscription:
    """A queue's SQS subscription to a topic, with raw delivery and a job-type filter."""

    topic_key: str
    queue_key: str
    topic_name: str
    topic_arn: str
    queue_name: str
    queue_arn: str
    #: ``{"type": [sorted job types]}`` on the message body, or ``None`` for every message.
    filter_policy: dict[str, list[str]] | None
    #: Subscribe attributes, in the order they must be set (scope before policy).
    attributes: dict[str, str]

    @property
    def name(self) -> str:
        """``conveyor-dev-orders → conveyor-dev-billing``."""
        return f"{self.topic_name} → {self.queue_name}"


@dataclass(frozen=True)
class DesiredIndex:
    """A global secondary index: string partition and sort keys, keys only projected."""

    name: str
    partition_key: str
    sort_key: str


@dataclass(frozen=True)
class DesiredTable:
    """A DynamoDB table: a string partition key, on-demand billing, time to live.

    The timer table also has a string sort key and a global secondary index.

    Encryption at rest is not a setting here: DynamoDB encrypts every table, and
    Conveyor creates it with the default AWS owned key (no KMS key, no KMS cost).
    A KMS key chosen out of band is reported, never undone.
    """

    key: str
    name: str
    arn: str
    partition_key: str
    #: Of the partition key: ``S`` (string).
    partition_key_type: str
    billing_mode: str
    ttl_attribute: str
    tags: dict[str, str]
    #: A string sort key (the timer table's), or none.
    sort_key: str | None = None
    indexes: tuple[DesiredIndex, ...] = ()


@dataclass(frozen=True)
class DesiredBucket:
    """The S3 bucket of claim-checked payloads: private, encrypted, objects expiring.

    Encryption (SSE-S3, AES256) and the public access block (all four settings on)
    are fixed, not settings: a payload bucket has no reason to be public.
    """

    key: str
    name: str
    arn: str
    region: str
    #: The lifecycle rule deletes objects this many days after upload.
    expiry_days: int
    tags: dict[str, str]


@dataclass(frozen=True)
class DesiredState:
    """Everything one topology provisions, in one account and region."""

    project: str
    environment: str
    account: str
    region: str
    #: ``<project>-<environment>-``: every name this topology owns starts with it.
    prefix: str
    dlqs: list[DesiredQueue] = field(default_factory=list)
    queues: list[DesiredQueue] = field(default_factory=list)
    topics: list[DesiredTopic] = field(default_factory=list)
    subscriptions: list[DesiredSubscription] = field(default_factory=list)
    #: DynamoDB tables: the idempotency guard's and the job ledger's when a job type
    #: enables them, the producer API's idempotency keys.
    tables: list[DesiredTable] = field(default_factory=list)
    #: The claim-check bucket (always: any job's payload may outgrow SNS).
    buckets: list[DesiredBucket] = field(default_factory=list)

    @property
    def all_queues(self) -> list[DesiredQueue]:
        """DLQs first, then queues: the order they are created in."""
        return [*self.dlqs, *self.queues]

    def owns_queue_arn(self, arn: str) -> bool:
        """Whether ``arn`` is an SQS queue of this topology, or one named with its prefix here."""
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs":
            return False
        _, partition, _, region, account, name = parts
        if (partition, region, account) != (partition_of(self.region), self.region, self.account):
            return False
        return name.startswith(self.prefix) or any(q.name == name for q in self.all_queues)


def deny_insecure_transport(actions: str, resource: Any) -> dict[str, Any]:
    """A statement refusing ``actions`` on ``resource`` to any request not made over TLS."""
    return {
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": actions,
        "Resource": resource,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def queue_policy(queue_arn: str, topic_arns: list[str]) -> dict[str, Any]:
    """A policy that lets only ``topic_arns`` (through SNS) send to the queue, over TLS only."""
    return {
        "Version": "2012-10-17",
        "Id": f"{queue_arn}/conveyor",
        "Statement": [
            {
                "Sid": POLICY_SID,
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": sorted(topic_arns)}},
            },
            deny_insecure_transport("sqs:*", queue_arn),
        ],
    }


def desired_state(topology: Topology, account: str, region: str) -> DesiredState:
    """The resources ``topology`` declares, named and configured, in ``account``/``region``."""
    tags = {TAG_PROJECT: topology.project, TAG_ENVIRONMENT: topology.environment}
    state = DesiredState(
        project=topology.project,
        environment=topology.environment,
        account=account,
        region=region,
        prefix=topology.resource_name(""),
    )

    for key, topic in topology.topics.items():
        name = topology.topic_name(key)
        attributes: dict[str, str] = {}
        # FifoTopic is sent only for FIFO topics: AWS reports it only for them, and moto's
        # CreateTopic tests the *string* ("false" is truthy) and would demand a .fifo name.
        if topic.fifo:
            attributes = {
                "FifoTopic": "true",
                "ContentBasedDeduplication": str(topic.content_based_deduplication).lower(),
            }
        state.topics.append(
            DesiredTopic(
                key=key,
                name=name,
                arn=sns_arn(region, account, name),
                fifo=topic.fifo,
                attributes=attributes,
                tags=dict(tags),
                other_flavour_name=topology.resource_name(key, fifo=not topic.fifo),
            )
        )
    topic_arns = {t.key: t.arn for t in state.topics}
    topic_names = {t.key: t.name for t in state.topics}

    for key, queue in topology.queues.items():
        name = topology.queue_name(key)
        arn = sqs_arn(region, account, name)
        dlq_name = topology.dlq_name(key)
        dlq_arn = sqs_arn(region, account, dlq_name)

        # SqsManagedSseEnabled: AWS turns SSE-SQS on for new queues and reports it; moto
        # (5.2.5) defaults it to true too and echoes whatever string was set, so it is
        # compared like any boolean ("true" == "True"); no special case is needed.
        dlq_attributes = {
            "MessageRetentionPeriod": seconds(queue.dead_letter.retention_s),
            "SqsManagedSseEnabled": "true",
            "RedriveAllowPolicy": dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]}),
        }
        if queue.fifo:
            dlq_attributes["FifoQueue"] = "true"
        state.dlqs.append(
            DesiredQueue(
                key=key,
                kind="dlq",
                name=dlq_name,
                arn=dlq_arn,
                fifo=queue.fifo,
                attributes=dlq_attributes,
                policy=None,
                tags=dict(tags),
                other_flavour_name=topology.resource_name(f"{key}-dlq", fifo=not queue.fifo),
            )
        )

        attributes = {
            "VisibilityTimeout": seconds(queue.visibility_timeout_s),
            "MessageRetentionPeriod": seconds(queue.retention_s),
            "DelaySeconds": seconds(queue.delay_s),
            "ReceiveMessageWaitTimeSeconds": str(RECEIVE_WAIT_S),
            "SqsManagedSseEnabled": "true",
            "RedrivePolicy": dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": topology.max_receive_count(key)}
            ),
        }
        if queue.fifo:
            attributes["FifoQueue"] = "true"
            # Producers send an explicit deduplication id (the job id).
            attributes["ContentBasedDeduplication"] = "false"
        # `job_types: []` receives nothing (as Topology.job_types_of_queue reads it): SNS
        # cannot express an empty filter, so such a subscription is simply not created.
        subscriptions = [s for s in queue.subscriptions if s.job_types != []]
        subscribed = [topic_arns[s.topic] for s in subscriptions]
        state.queues.append(
            DesiredQueue(
                key=key,
                kind="queue",
                name=name,
                arn=arn,
                fifo=queue.fifo,
                attributes=attributes,
                policy=dumps(queue_policy(arn, subscribed)) if subscribed else None,
                tags=dict(tags),
                other_flavour_name=topology.resource_name(key, fifo=not queue.fifo),
            )
        )

        for sub in subscriptions:
            filter_policy = (
                {"type": sorted(set(sub.job_types))} if sub.job_types is not None else None
            )
            sub_attributes = {"RawMessageDelivery": "true"}
            if filter_policy is not None:
                # The body is the CloudEvents document, whose `type` is the job type: any
                # producer that publishes the plain document is routed, no attributes needed.
                sub_attributes["FilterPolicyScope"] = "MessageBody"
                sub_attributes["FilterPolicy"] = dumps(filter_policy)
            state.subscriptions.append(
                DesiredSubscription(
                    topic_key=sub.topic,
                    queue_key=key,
                    topic_name=topic_names[sub.topic],
                    topic_arn=topic_arns[sub.topic],
                    queue_name=name,
                    queue_arn=arn,
                    filter_policy=filter_policy,
                    attributes=sub_attributes,
                )
            )

    def table(key: str, name: str) -> DesiredTable:
        # Every Conveyor table: a string partition key, on demand, time to live.
        return DesiredTable(
            key=key,
            name=name,
            arn=dynamodb_table_arn(region, account, name),
            partition_key=TABLE_PARTITION_KEY,
            partition_key_type="S",
            billing_mode=TABLE_BILLING_MODE,
            ttl_attribute=TABLE_TTL_ATTRIBUTE,
            tags=dict(tags),
        )

    if guarded_job_types(topology):
        state.tables.append(table(SUCCEEDED_TABLE, succeeded_table_name(topology)))
    if topology.ledger_job_types():
        state.tables.append(table(LEDGER_TABLE, ledger_table_name(topology)))
    # Always: any request may carry an Idempotency-Key (the API touches the table only then).
    state.tables.append(table(IDEMPOTENCY_TABLE, topology.resource_name(IDEMPOTENCY_TABLE)))
    # Always: any job may be delayed (the scheduler's timers; cron schedules' state too).
    timers = table(TIMERS_TABLE, timers_table_name(topology))
    state.tables.append(
        replace(
            timers,
            sort_key=TABLE_SORT_KEY,
            indexes=(DesiredIndex(DUE_INDEX, DUE_BUCKET_ATTRIBUTE, DUE_SORT_ATTRIBUTE),),
        )
    )
    bucket = payload_bucket_name(topology, account, region)
    state.buckets.append(
        DesiredBucket(
            key=PAYLOAD_BUCKET,
            name=bucket,
            arn=s3_bucket_arn(region, bucket),
            region=region,
            expiry_days=math.ceil(topology.payloads.expiry_s / 86400),
            tags=dict(tags),
        )
    )
    return state
