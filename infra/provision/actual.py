"""Reading what exists: declared queues, DLQs, topics, tables, buckets; the topics' subscriptions.

Only declared names are looked up (never a list-by-prefix), so reading is
strongly consistent on AWS and touches nothing another topology owns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from infra import aws
from infra.aws.errors import (
    QUEUE_MISSING_CODES,
    SNS_MISSING_CODES,
    TABLE_MISSING_CODES,
    aws_errors,
    error_code,
)
from infra.aws.lookup import Depth, queue_url_or_none
from infra.provision.buckets import ActualBucket, read_bucket
from infra.provision.desired import DesiredState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient


@dataclass(frozen=True)
class ActualQueue:
    """An existing queue: its URL, every attribute SQS reports, and its tags."""

    name: str
    url: str
    attributes: dict[str, str]
    tags: dict[str, str]

    @property
    def message_count(self) -> int:
        """Visible + in flight + delayed messages (approximate)."""
        return Depth.from_attributes(self.attributes).total


@dataclass(frozen=True)
class ActualSubscription:
    """A subscription on a managed topic; ``attributes`` only read for declared endpoints."""

    arn: str
    topic_arn: str
    protocol: str
    endpoint: str
    attributes: dict[str, str] | None = None

    @property
    def pending(self) -> bool:
        """Unconfirmed subscriptions have no ARN yet (``PendingConfirmation``)."""
        return not self.arn.startswith("arn:")


@dataclass(frozen=True)
class ActualTopic:
    """An existing topic, its attributes, tags and subscriptions."""

    name: str
    arn: str
    attributes: dict[str, str]
    tags: dict[str, str]
    subscriptions: list[ActualSubscription] = field(default_factory=list)


@dataclass(frozen=True)
class ActualTable:
    """An existing DynamoDB table, as DescribeTable, DescribeTimeToLive and its tags report it."""

    name: str
    arn: str
    #: ``CREATING``, ``ACTIVE``, ``UPDATING``, ``DELETING`` …
    status: str
    #: ``(attribute, key type, attribute type)``, e.g. ``(("pk", "HASH", "S"),)``.
    key_schema: tuple[tuple[str, str, str], ...]
    #: ``PAY_PER_REQUEST`` or ``PROVISIONED``.
    billing_mode: str
    #: ``ENABLED``, ``ENABLING``, ``DISABLED``, ``DISABLING``.
    ttl_status: str
    #: The TTL attribute; may be reported while TTL is disabled (moto keeps the last one).
    ttl_attribute: str | None
    #: The KMS key encrypting the table; ``None`` for the AWS owned key (the default).
    kms_key: str | None
    tags: dict[str, str]
    #: The names of its global secondary indexes.
    indexes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActualState:
    """What exists of a desired state, by AWS name."""

    queues: dict[str, ActualQueue] = field(default_factory=dict)
    topics: dict[str, ActualTopic] = field(default_factory=dict)
    tables: dict[str, ActualTable] = field(default_factory=dict)
    buckets: dict[str, ActualBucket] = field(default_factory=dict)
    #: Names of resources that exist with the other FIFO setting than declared.
    other_flavours: set[str] = field(default_factory=set)


def read_queue(sqs: SQSClient, name: str) -> ActualQueue | None:
    """The queue called ``name`` with all its attributes and tags, or ``None``."""
    url = queue_url_or_none(sqs, name)
    if url is None:
        return None
    with aws_errors(f"reading queue {name}"):
        try:
            # "All" only: moto refuses attribute names it does not know (RedriveAllowPolicy).
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get(
                "Attributes", {}
            )
            tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
        except ClientError as exc:
            if error_code(exc) in QUEUE_MISSING_CODES:  # deleted while we looked
                return None
            raise
    return ActualQueue(
        name=name, url=url, attributes={str(k): v for k, v in attributes.items()}, tags=dict(tags)
    )


def _topic_attributes(sns: SNSClient, name: str, arn: str) -> dict[str, str] | None:
    with aws_errors(f"reading topic {name}"):
        try:
            return dict(sns.get_topic_attributes(TopicArn=arn).get("Attributes", {}))
        except ClientError as exc:
            if error_code(exc) in SNS_MISSING_CODES:
                return None
            raise


def read_topic(
    sns: SNSClient, name: str, arn: str, *, read_attributes_of: frozenset[str]
) -> ActualTopic | None:
    """The topic ``arn`` and its subscriptions, or ``None``.

    Subscription attributes are read only for endpoints in ``read_attributes_of``
    (the declared queue ARNs): the others are never compared.
    """
    attributes = _topic_attributes(sns, name, arn)
    if attributes is None:
        return None
    subscriptions: list[ActualSubscription] = []
    with aws_errors(f"reading topic {name}"):
        try:
            tag_list = sns.list_tags_for_resource(ResourceArn=arn).get("Tags", [])
            pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn)
            listed = [s for page in pages for s in page.get("Subscriptions", [])]
        except ClientError as exc:
            if error_code(exc) in SNS_MISSING_CODES:
                return None
            raise
    for item in listed:
        sub = ActualSubscription(
            arn=item.get("SubscriptionArn", ""),
            topic_arn=arn,
            protocol=item.get("Protocol", ""),
            endpoint=item.get("Endpoint", ""),
        )
        if sub.protocol == "sqs" and sub.endpoint in read_attributes_of and not sub.pending:
            with aws_errors(f"reading subscription {sub.arn}"):
                try:
                    found = sns.get_subscription_attributes(SubscriptionArn=sub.arn)
                except ClientError as exc:
                    if error_code(exc) in SNS_MISSING_CODES:  # unsubscribed while we looked
                        continue
                    raise
            sub = ActualSubscription(
                arn=sub.arn,
                topic_arn=arn,
                protocol=sub.protocol,
                endpoint=sub.endpoint,
                attributes=dict(found.get("Attributes", {})),
            )
        subscriptions.append(sub)
    tags = {t["Key"]: t["Value"] for t in tag_list}
    return ActualTopic(
        name=name, arn=arn, attributes=attributes, tags=tags, subscriptions=subscriptions
    )


def read_table(ddb: DynamoDBClient, name: str) -> ActualTable | None:
    """The table called ``name`` with its time to live and tags, or ``None``."""
    with aws_errors(f"reading table {name}"):
        try:
            table = ddb.describe_table(TableName=name)["Table"]
            ttl = ddb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
            pages = ddb.get_paginator("list_tags_of_resource").paginate(
                ResourceArn=table.get("TableArn", "")
            )
            tags = {t["Key"]: t["Value"] for page in pages for t in page.get("Tags", [])}
        except ClientError as exc:
            if error_code(exc) in TABLE_MISSING_CODES:  # also: deleted while we looked
                return None
            raise
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    key_schema = tuple(
        (k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], ""))
        for k in table.get("KeySchema", [])
    )
    # AWS may leave BillingModeSummary out for a table that was always provisioned;
    # moto (5.2.5) always reports it. (moto also keeps the old ProvisionedThroughput
    # after a switch to on demand, where AWS reports zeros: only the summary is read.)
    billing_mode = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    # No SSEDescription means the AWS owned key, on AWS and on moto. moto reports the
    # SSESpecification given to CreateTable, and ignores one given to UpdateTable.
    sse = table.get("SSEDescription", {})
    kms_key = None
    if sse.get("SSEType") == "KMS" and sse.get("Status") != "DISABLED":
        kms_key = sse.get("KMSMasterKeyArn", "KMS")
    return ActualTable(
        name=name,
        arn=table.get("TableArn", ""),
        status=table.get("TableStatus", ""),
        key_schema=key_schema,
        billing_mode=billing_mode,
        # A table that never had TTL reports DISABLED and no attribute (AWS and moto).
        ttl_status=ttl.get("TimeToLiveStatus", "DISABLED"),
        ttl_attribute=ttl.get("AttributeName"),
        kms_key=kms_key,
        tags=tags,
        indexes=tuple(str(i.get("IndexName", "")) for i in table.get("GlobalSecondaryIndexes", [])),
    )


def read_actual(desired: DesiredState) -> ActualState:
    """Read every declared resource (and its other-FIFO-flavour twin) from AWS."""
    sqs = aws.client("sqs")
    sns = aws.client("sns")
    state = ActualState()
    for dq in desired.all_queues:
        found = read_queue(sqs, dq.name)
        if found is not None:
            state.queues[dq.name] = found
        if queue_url_or_none(sqs, dq.other_flavour_name) is not None:
            state.other_flavours.add(dq.other_flavour_name)
    declared_endpoints = frozenset(q.arn for q in desired.queues)
    for dt in desired.topics:
        topic = read_topic(sns, dt.name, dt.arn, read_attributes_of=declared_endpoints)
        if topic is not None:
            state.topics[dt.name] = topic
        other_arn = dt.arn.rsplit(":", 1)[0] + ":" + dt.other_flavour_name
        if _topic_attributes(sns, dt.other_flavour_name, other_arn) is not None:
            state.other_flavours.add(dt.other_flavour_name)
    if desired.tables:  # no DynamoDB call (nor permission) unless a table is declared
        ddb = aws.client("dynamodb")
        for table in desired.tables:
            found_table = read_table(ddb, table.name)
            if found_table is not None:
                state.tables[table.name] = found_table
    if desired.buckets:
        s3 = aws.client("s3")
        for bucket in desired.buckets:
            found_bucket = read_bucket(s3, bucket.name)
            if found_bucket is not None:
                state.buckets[bucket.name] = found_bucket
    return state
