"""Running a plan: plan, apply and destroy for a topology.

Each call reads the current state afresh, computes the steps (:mod:`.diff`) and,
for apply/destroy, runs them in order, stopping at the first AWS error with a
:class:`ProvisionError` that says what was being done and what was already done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from infra import aws
from infra.aws.errors import (
    QUEUE_MISSING_CODES,
    SNS_MISSING_CODES,
    TABLE_MISSING_CODES,
    aws_errors,
    describe_aws_error,
    error_code,
)
from infra.aws.lookup import queue_url_or_none
from infra.aws.names import MAX_BUCKET_NAME_LEN
from infra.errors import AwsError, MissingResourceError, ProvisionError
from infra.provision.actual import read_actual
from infra.provision.buckets import (
    BUCKET_OPERATIONS,
    describe_bucket_operation,
    run_bucket_operation,
)
from infra.provision.desired import DesiredState, desired_state
from infra.provision.diff import (
    CreateQueue,
    CreateTopic,
    DeleteQueue,
    DeleteTopic,
    Operation,
    SetQueueAttributes,
    SetSubscriptionAttributes,
    SetTopicAttributes,
    Step,
    Subscribe,
    TagQueue,
    TagTopic,
    Unsubscribe,
    apply_steps,
    destroy_steps,
)
from infra.provision.plan import Change, Plan
from infra.provision.tables import (
    TABLE_OPERATIONS,
    CreateTable,
    DeleteTable,
    EnableTimeToLive,
    SetBillingMode,
    TableOperation,
    TagTable,
    describe_table_operation,
)
from infra.topology import Topology

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import WaiterConfigTypeDef
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient


def current_desired_state(topology: Topology) -> DesiredState:
    """The desired state in the account and region the AWS settings point at."""
    with aws_errors("finding the AWS account (sts:GetCallerIdentity)"):
        account = aws.account_id()
    desired = desired_state(topology, account, aws.region_name())
    for bucket in desired.buckets:
        if len(bucket.name) > MAX_BUCKET_NAME_LEN:
            # Not truncated: a cut name could be another environment's bucket.
            raise ProvisionError(
                f"the payload bucket's name {bucket.name} is {len(bucket.name)} characters,"
                f" above S3's {MAX_BUCKET_NAME_LEN}: shorten project or environment in"
                " queues.yaml"
            )
    return desired


#: How long apply waits for a table to become ACTIVE (AWS: seconds; moto: at once).
TABLE_WAIT: WaiterConfigTypeDef = {"Delay": 2, "MaxAttempts": 150}


def _describe(op: Operation) -> str:  # noqa: PLR0911, PLR0912 - one case per operation
    if isinstance(op, TABLE_OPERATIONS):
        return describe_table_operation(op)
    if isinstance(op, BUCKET_OPERATIONS):
        return describe_bucket_operation(op)
    match op:
        case CreateQueue(name=name):
            return f"creating queue {name}"
        case SetQueueAttributes(name=name, attributes=attributes):
            return f"setting {', '.join(attributes)} on queue {name}"
        case TagQueue(name=name):
            return f"tagging queue {name}"
        case DeleteQueue(name=name):
            return f"deleting queue {name}"
        case CreateTopic(name=name):
            return f"creating topic {name}"
        case SetTopicAttributes(name=name, attributes=attributes):
            return f"setting {', '.join(attributes)} on topic {name}"
        case TagTopic(name=name):
            return f"tagging topic {name}"
        case DeleteTopic(name=name):
            return f"deleting topic {name}"
        case Subscribe(name=name):
            return f"subscribing {name}"
        case SetSubscriptionAttributes(name=name, attributes=attributes):
            return f"setting {', '.join(k for k, _ in attributes)} on subscription {name}"
        case Unsubscribe(name=name):
            return f"deleting subscription {name}"
    raise AssertionError(op)  # pragma: no cover - the match is exhaustive


class _Runner:
    """Runs operations, remembering queue URLs (known from reading or creating)."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.sqs: SQSClient = aws.client("sqs")
        self.sns: SNSClient = aws.client("sns")
        self.urls = dict(urls)

    @property
    def ddb(self) -> DynamoDBClient:
        # Asked for only when a table is declared.
        return aws.client("dynamodb")

    def url(self, name: str) -> str | None:
        """The URL of queue ``name`` (known, else looked up); None if it does not exist."""
        if name not in self.urls:
            found = queue_url_or_none(self.sqs, name)
            if found is None:
                return None
            self.urls[name] = found
        return self.urls[name]

    def existing_url(self, name: str) -> str:
        """The URL of queue ``name``; MissingResourceError if it was deleted since it was read."""
        url = self.url(name)
        if url is None:
            raise MissingResourceError(f"queue {name} does not exist")
        return url

    def run(self, op: Operation) -> None:
        try:
            if isinstance(op, TABLE_OPERATIONS):
                self._run_table(op)
            elif isinstance(op, BUCKET_OPERATIONS):
                # Asked for only when a bucket is declared.
                run_bucket_operation(aws.client("s3"), op)
            else:
                self._run(op)
        except (ClientError, BotoCoreError) as exc:
            raise ProvisionError(f"{_describe(op)}: {describe_aws_error(exc)}") from exc
        except ProvisionError:
            raise
        except AwsError as exc:  # from a queue URL lookup, which names what it was doing
            raise ProvisionError(f"{_describe(op)}: {exc}") from exc.__cause__

    def _run(self, op: Operation) -> None:  # noqa: PLR0912 - one case per operation
        # The stubs type attribute names as Literals; ours are checked by the diff.
        match op:
            case CreateQueue(name=name, attributes=attributes, tags=tags):
                result = self.sqs.create_queue(
                    QueueName=name, Attributes=cast("Any", attributes), tags=tags
                )
                self.urls[name] = result["QueueUrl"]
            case SetQueueAttributes(name=name, attributes=attributes):
                self.sqs.set_queue_attributes(
                    QueueUrl=self.existing_url(name), Attributes=cast("Any", attributes)
                )
            case TagQueue(name=name, tags=tags):
                self.sqs.tag_queue(QueueUrl=self.existing_url(name), Tags=tags)
            case DeleteQueue(name=name):
                url = self.url(name)
                if url is not None:  # already gone: nothing to delete
                    try:
                        self.sqs.delete_queue(QueueUrl=url)
                    except ClientError as exc:
                        if error_code(exc) not in QUEUE_MISSING_CODES:
                            raise
                self.urls.pop(name, None)
            case CreateTopic(name=name, attributes=attributes, tags=tags):
                self.sns.create_topic(
                    Name=name,
                    Attributes=attributes,
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
                )
            case SetTopicAttributes(arn=arn, attributes=attributes):
                for key, value in attributes.items():
                    self.sns.set_topic_attributes(
                        TopicArn=arn, AttributeName=key, AttributeValue=value
                    )
            case TagTopic(arn=arn, tags=tags):
                self.sns.tag_resource(
                    ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
                )
            case DeleteTopic(arn=arn):
                # DeleteTopic is idempotent: a missing topic is not an error.
                self.sns.delete_topic(TopicArn=arn)
            case Subscribe(topic_arn=topic_arn, endpoint=endpoint, attributes=attributes):
                self.sns.subscribe(
                    TopicArn=topic_arn,
                    Protocol="sqs",
                    Endpoint=endpoint,
                    Attributes=attributes,
                    ReturnSubscriptionArn=True,
                )
            case SetSubscriptionAttributes(arn=arn, attributes=ordered_attributes):
                for key, value in ordered_attributes:
                    self.sns.set_subscription_attributes(
                        SubscriptionArn=arn, AttributeName=key, AttributeValue=value
                    )
            case Unsubscribe(arn=arn):
                try:
                    self.sns.unsubscribe(SubscriptionArn=arn)
                except ClientError as exc:
                    if error_code(exc) not in SNS_MISSING_CODES:
                        raise

    def _wait_active(self, name: str) -> None:
        self.ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig=TABLE_WAIT)

    def _run_table(self, op: TableOperation) -> None:
        match op:
            case CreateTable(name=name, partition_key=key, partition_key_type=key_type):
                attributes: dict[str, str] = {key: key_type}
                schema: list[Any] = [{"AttributeName": key, "KeyType": "HASH"}]
                if op.sort_key is not None:
                    attributes[op.sort_key] = "S"
                    schema.append({"AttributeName": op.sort_key, "KeyType": "RANGE"})
                extra: dict[str, Any] = {}
                if op.indexes:
                    extra["GlobalSecondaryIndexes"] = [
                        {
                            "IndexName": index.name,
                            "KeySchema": [
                                {"AttributeName": index.partition_key, "KeyType": "HASH"},
                                {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                            ],
                            "Projection": {"ProjectionType": "KEYS_ONLY"},
                        }
                        for index in op.indexes
                    ]
                    for index in op.indexes:
                        attributes[index.partition_key] = "S"
                        attributes[index.sort_key] = "S"
                self.ddb.create_table(
                    TableName=name,
                    AttributeDefinitions=[
                        {"AttributeName": a, "AttributeType": cast("Any", t)}
                        for a, t in attributes.items()
                    ],
                    KeySchema=schema,
                    BillingMode=cast("Any", op.billing_mode),
                    # Enabled=false: DynamoDB's default encryption, with the AWS owned key.
                    SSESpecification={"Enabled": False},
                    Tags=[{"Key": k, "Value": v} for k, v in op.tags.items()],
                    **extra,
                )
                # AWS creates tables asynchronously: TTL and tags need an ACTIVE table.
                self._wait_active(name)
            case SetBillingMode(name=name, billing_mode=mode):
                self.ddb.update_table(TableName=name, BillingMode=cast("Any", mode))
                self._wait_active(name)
            case EnableTimeToLive(name=name, attribute=attribute):
                self.ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
                )
            case TagTable(arn=arn, tags=tags):
                self.ddb.tag_resource(
                    ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
                )
            case DeleteTable(name=name):
                # Asynchronous on AWS (the table is DELETING for a while; moto deletes at
                # once): destroy does not wait, and a table being deleted is not planned.
                try:
                    self.ddb.delete_table(TableName=name)
                except ClientError as exc:
                    if error_code(exc) not in TABLE_MISSING_CODES:
                        raise


def _execute(steps: list[Step], urls: dict[str, str]) -> Plan:
    runner = _Runner(urls)
    done: list[Change] = []
    for step in steps:
        if step.change is not None and step.change.action == "note":
            done.append(step.change)
            continue
        try:
            for op in step.operations:
                runner.run(op)
        except AwsError as exc:
            raise ProvisionError(str(exc), applied=done) from exc.__cause__
        if step.change is not None:
            done.append(step.change)
    return Plan(done)


def _plan_of(steps: list[Step]) -> Plan:
    return Plan([s.change for s in steps if s.change is not None])


@contextmanager
def _provisioning() -> Iterator[None]:
    # Reads go through infra.aws's lookups, which raise AwsError; what provisioning
    # raises is a ProvisionError (the CLI reports what was applied before it).
    try:
        yield
    except ProvisionError:
        raise
    except AwsError as exc:
        raise ProvisionError(str(exc)) from exc.__cause__


def plan(topology: Topology) -> Plan:
    """What :func:`apply` would change now (reads AWS, changes nothing)."""
    with _provisioning():
        return _plan(topology)


def _plan(topology: Topology) -> Plan:
    desired = current_desired_state(topology)
    return _plan_of(apply_steps(desired, read_actual(desired)))


def apply(topology: Topology) -> Plan:
    """Create or update everything ``topology`` declares; return what was changed.

    Idempotent: when nothing differs, the returned plan is empty (it may still
    carry notes, e.g. subscriptions Conveyor leaves alone).
    """
    with _provisioning():
        return _apply(topology)


def _apply(topology: Topology) -> Plan:
    desired = current_desired_state(topology)
    actual = read_actual(desired)
    urls = {name: q.url for name, q in actual.queues.items()}
    return _execute(apply_steps(desired, actual), urls)


def plan_destroy(topology: Topology) -> Plan:
    """What :func:`destroy` would delete now (reads AWS, changes nothing)."""
    with _provisioning():
        return _plan_destroy(topology)


def _plan_destroy(topology: Topology) -> Plan:
    desired = current_desired_state(topology)
    return _plan_of(destroy_steps(desired, read_actual(desired)))


def destroy(topology: Topology) -> Plan:
    """Delete every resource ``topology`` declares (and subscriptions to its queues).

    Idempotent: what does not exist is skipped; a second destroy returns an empty plan.
    """
    with _provisioning():
        return _destroy(topology)


def _destroy(topology: Topology) -> Plan:
    desired = current_desired_state(topology)
    actual = read_actual(desired)
    urls = {name: q.url for name, q in actual.queues.items()}
    return _execute(destroy_steps(desired, actual), urls)
