"""Provisioning queues.yaml against the real emulator over HTTP: plan, apply, destroy, the CLI."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from structlog.testing import capture_logs
from typer.testing import CliRunner

from conveyor.cli.infra import app
from infra import aws, provision
from infra.aws import lookup
from infra.errors import MissingResourceError
from infra.topology import Topology, load_topology, parse_topology
from workers.idempotency import REMEMBER_S, DynamoSuccessStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUEUES = ("images", "billing", "notifications")


@pytest.fixture
def topology(aws_env: AwsEnv) -> Topology:
    topology = load_topology(REPO / "queues.yaml")
    assert topology.environment == aws_env.environment
    return topology


@pytest.fixture
def applied(topology: Topology) -> Topology:
    provision.apply(topology)
    return topology


def _sqs() -> SQSClient:
    return aws.client("sqs")


def _sns() -> SNSClient:
    return aws.client("sns")


#: What the sample declares besides tables and the bucket: 3 queues, 3 DLQs, 2 topics,
#: 3 subscriptions. Tables and the bucket are checked by name (others add tables).
SAMPLE_CORE = 11


def _core(plan: provision.Plan) -> list[provision.Change]:
    """The plan's actions on queues, DLQs, topics and subscriptions."""
    return [c for c in plan.actions if c.kind not in ("table", "bucket")]


def _storage(plan: provision.Plan) -> set[tuple[str, str, str]]:
    """``(action, kind, name)`` of the plan's table and bucket actions."""
    return {(c.action, c.kind, c.name) for c in plan.actions if c.kind in ("table", "bucket")}


def _bucket_name(topology: Topology) -> str:
    return (
        f"{topology.project}-{topology.environment}-payloads-{aws.account_id()}-{aws.region_name()}"
    )


def _attributes(url: str) -> dict[str, str]:
    found = _sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {str(k): v for k, v in found.items()}


def _subscriptions(topic_arn: str) -> list[dict[str, Any]]:
    pages = _sns().get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn)
    return [dict(s) for page in pages for s in page["Subscriptions"]]


def _exists(topology: Topology, queue: str) -> bool:
    try:
        _sqs().get_queue_url(QueueName=topology.queue_name(queue))
    except ClientError:
        return False
    return True


def _topic_exists(arn: str) -> bool:
    try:
        _sns().get_topic_attributes(TopicArn=arn)
    except ClientError:
        return False
    return True


def test_apply_creates_everything_and_a_second_apply_changes_nothing(
    topology: Topology,
) -> None:
    planned = provision.plan(topology)
    assert len(_core(planned)) == SAMPLE_CORE
    ledger = f"{topology.project}-{topology.environment}-jobs"
    assert {("create", "table", ledger), ("create", "bucket", _bucket_name(topology))} <= _storage(
        planned
    )

    result = provision.apply(topology)
    assert result.actions == planned.actions
    assert {c.action for c in result.changes} == {"create"}

    account, region = aws.account_id(), aws.region_name()
    for queue in QUEUES:
        url = lookup.queue_url(topology, queue)
        attrs = _attributes(url)
        dlq_attrs = _attributes(lookup.dlq_url(topology, queue))
        assert json.loads(attrs["RedrivePolicy"]) == {
            "deadLetterTargetArn": dlq_attrs["QueueArn"],
            "maxReceiveCount": topology.max_receive_count(queue),
        }
        assert dlq_attrs["QueueArn"].endswith(f":{topology.dlq_name(queue)}")
        assert attrs["ReceiveMessageWaitTimeSeconds"] == "20"
        assert attrs["VisibilityTimeout"] == str(int(topology.queues[queue].visibility_timeout_s))
        assert attrs["SqsManagedSseEnabled"] == "true"
        policy = json.loads(attrs["Policy"])
        topics = [topology.queues[queue].subscriptions[0].topic]
        assert policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == [
            lookup.topic_arn(topology, t) for t in topics
        ]
        tags = _sqs().list_queue_tags(QueueUrl=url)["Tags"]
        assert tags["conveyor:environment"] == topology.environment

    orders = lookup.topic_arn(topology, "orders")
    assert orders == f"arn:aws:sns:{region}:{account}:{topology.topic_name('orders')}"
    filters = {}
    for sub in _subscriptions(orders):
        sub_arn = sub["SubscriptionArn"]
        attributes = _sns().get_subscription_attributes(SubscriptionArn=sub_arn)["Attributes"]
        assert attributes["RawMessageDelivery"] == "true"
        assert attributes["FilterPolicyScope"] == "MessageBody"
        filters[sub["Endpoint"].rsplit(":", 1)[1]] = json.loads(attributes["FilterPolicy"])
    assert filters == {
        topology.queue_name("billing"): {"type": ["invoice.render", "order.placed"]},
        topology.queue_name("notifications"): {"type": ["email.send", "order.placed"]},
    }
    [media_sub] = _subscriptions(lookup.topic_arn(topology, "media"))
    media_attrs = _sns().get_subscription_attributes(SubscriptionArn=media_sub["SubscriptionArn"])
    assert "FilterPolicy" not in media_attrs["Attributes"]

    again = provision.apply(topology)
    assert again.is_empty
    assert again.changes == []
    assert provision.plan(topology).changes == []


def test_out_of_band_change_is_planned_and_fixed(applied: Topology) -> None:
    url = lookup.queue_url(applied, "billing")
    # Re-send the policy with the change: moto's SetQueueAttributes drops a queue policy
    # it is not given (AWS keeps it), and this test changes exactly one attribute.
    policy = _attributes(url)["Policy"]
    _sqs().set_queue_attributes(
        QueueUrl=url, Attributes={"VisibilityTimeout": "5", "Policy": policy}
    )

    plan = provision.plan(applied)
    assert [c.render() for c in plan.changes] == [
        f"~ queue {applied.queue_name('billing')}: VisibilityTimeout 5 → 120"
    ]
    assert plan.to_json()["changes"][0]["details"] == {
        "VisibilityTimeout": {"old": "5", "new": "120"}
    }

    fixed = provision.apply(applied)
    assert fixed.changes == plan.changes
    attrs = _attributes(url)
    assert attrs["VisibilityTimeout"] == "120"
    assert json.loads(attrs["Policy"]) == json.loads(policy)  # kept through the update
    assert provision.plan(applied).is_empty


def test_missing_policy_and_redrive_are_restored(applied: Topology) -> None:
    url = lookup.queue_url(applied, "notifications")
    before = _attributes(url)
    # Empty values remove the policy and the redrive.
    _sqs().set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": "", "Policy": ""})
    plan = provision.plan(applied)
    changed = {key for c in plan.changes for key in c.details}
    assert changed == {"RedrivePolicy", "Policy"}
    provision.apply(applied)
    after = _attributes(url)
    assert json.loads(after["RedrivePolicy"]) == json.loads(before["RedrivePolicy"])
    assert json.loads(after["Policy"]) == json.loads(before["Policy"])
    assert provision.plan(applied).is_empty


def test_unexpected_subscription_is_removed_and_foreign_one_left_alone(
    applied: Topology,
) -> None:
    sqs, sns = _sqs(), _sns()
    orders = lookup.topic_arn(applied, "orders")
    images_arn = _attributes(lookup.queue_url(applied, "images"))["QueueArn"]
    foreign_url = sqs.create_queue(QueueName=f"foreign-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    foreign_arn = _attributes(foreign_url)["QueueArn"]
    try:
        unexpected = sns.subscribe(TopicArn=orders, Protocol="sqs", Endpoint=images_arn)
        foreign = sns.subscribe(TopicArn=orders, Protocol="sqs", Endpoint=foreign_arn)

        plan = provision.plan(applied)
        topic_name = applied.topic_name("orders")
        assert [(c.action, c.kind, c.name) for c in plan.changes] == [
            ("delete", "subscription", f"{topic_name} → {applied.queue_name('images')}"),
            ("note", "subscription", f"{topic_name} → {foreign_arn.rsplit(':', 1)[1]}"),
        ]
        assert "left alone" in plan.changes[1].render()

        result = provision.apply(applied)
        assert [c.action for c in result.changes] == ["delete", "note"]
        arns = {s["SubscriptionArn"] for s in _subscriptions(orders)}
        assert unexpected["SubscriptionArn"] not in arns
        assert foreign["SubscriptionArn"] in arns

        again = provision.plan(applied)
        assert again.is_empty
        assert [c.action for c in again.changes] == ["note"]
    finally:
        sqs.delete_queue(QueueUrl=foreign_url)


def _drain(url: str, expected: int, deadline_s: float = 15.0) -> list[dict[str, Any]]:
    """Receive until ``expected`` messages arrived (or the deadline passed), then the rest."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + deadline_s
    while len(received) < expected and time.monotonic() < deadline:
        found = _sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        received += [json.loads(m["Body"]) for m in found.get("Messages", [])]
    # Delivery through SNS completed before Publish returned on the emulator: whatever
    # else is queued is here now.
    rest = _sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    received += [json.loads(m["Body"]) for m in rest.get("Messages", [])]
    return received


def _event(job_type: str) -> str:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": uuid.uuid4().hex,
            "type": job_type,
            "source": "tests",
            "datacontenttype": "application/json",
            "data": {},
        }
    )


def test_published_jobs_reach_exactly_the_subscribed_queues(applied: Topology) -> None:
    sns = _sns()
    orders = lookup.topic_arn(applied, "orders")
    media = lookup.topic_arn(applied, "media")
    sns.publish(TopicArn=orders, Message=_event("email.send"))
    sns.publish(TopicArn=orders, Message=_event("order.placed"))
    sns.publish(TopicArn=media, Message=_event("image.resize"))

    def types(queue: str, expected: int) -> list[str]:
        messages = _drain(lookup.queue_url(applied, queue), expected)
        # Raw delivery: the body is the published CloudEvents document itself.
        assert all(m["specversion"] == "1.0" for m in messages)
        return sorted(m["type"] for m in messages)

    assert types("billing", 1) == ["order.placed"]
    assert types("notifications", 2) == ["email.send", "order.placed"]
    assert types("images", 1) == ["image.resize"]


def test_destroy_removes_everything_and_is_idempotent(applied: Topology) -> None:
    preview = provision.plan_destroy(applied)
    assert len(_core(preview)) == 3 + 2 + 3 + 3  # subscriptions, topics, queues, DLQs
    assert ("delete", "bucket", _bucket_name(applied)) in _storage(preview)

    result = provision.destroy(applied)
    assert result.changes == preview.changes
    for queue in QUEUES:
        assert not _exists(applied, queue)
        with pytest.raises(MissingResourceError, match="does not exist"):
            lookup.dlq_url(applied, queue)
    for topic in applied.topics:
        assert not _topic_exists(lookup.topic_arn(applied, topic))

    again = provision.destroy(applied)
    assert again.is_empty
    assert again.changes == []
    assert len(_core(provision.plan(applied))) == SAMPLE_CORE


def test_lookups_never_create(topology: Topology) -> None:
    with pytest.raises(MissingResourceError, match=r"does not exist: run `conveyor infra apply`"):
        lookup.queue_url(topology, "billing")
    arn = lookup.topic_arn(topology, "orders")
    assert not _topic_exists(arn)
    assert not _exists(topology, "billing")
    with pytest.raises(MissingResourceError, match="unknown queue 'nope'"):
        lookup.queue_url(topology, "nope")


FIFO_YAML = """
version: 1
project: conveyor
topics:
  ledger: {fifo: %(fifo)s}
queues:
  entries:
    fifo: %(fifo)s
    subscriptions: [{topic: ledger, job_types: [ledger.entry]}]
job_types:
  ledger.entry: {topic: ledger, payload: "m:P", handler: "m:h"}
"""


def test_fifo_topology_and_a_fifo_flip(aws_env: AwsEnv) -> None:
    env = aws_env.environment
    standard = parse_topology(FIFO_YAML % {"fifo": "false"}, environment=env)
    fifo = parse_topology(FIFO_YAML % {"fifo": "true"}, environment=env)

    provision.apply(standard)
    result = provision.apply(fifo)
    assert {c.name for c in result.actions if c.action == "create"} == {
        f"conveyor-{env}-ledger.fifo",
        f"conveyor-{env}-entries.fifo",
        f"conveyor-{env}-entries-dlq.fifo",
        f"conveyor-{env}-ledger.fifo → conveyor-{env}-entries.fifo",
    }
    notes = [c for c in result.changes if c.action == "note"]
    assert {c.kind for c in notes} == {"topic", "queue", "dlq"}
    assert all("FIFO cannot change" in c.details["message"] for c in notes)

    url = lookup.queue_url(fifo, "entries")
    attrs = _attributes(url)
    assert attrs["FifoQueue"] == "true"
    assert attrs["ContentBasedDeduplication"] == "false"
    topic = _sns().get_topic_attributes(TopicArn=lookup.topic_arn(fifo, "ledger"))
    assert str(topic["Attributes"]["FifoTopic"]).lower() == "true"

    # The notes stay, but nothing loops: a second apply changes nothing.
    again = provision.apply(fifo)
    assert again.is_empty
    assert [c.action for c in again.changes] == ["note"] * 3

    provision.destroy(fifo)
    provision.destroy(standard)
    assert provision.plan_destroy(fifo).changes == []


def _cli(*args: str) -> Any:
    return CliRunner().invoke(
        app, list(args), env={"CONVEYOR_QUEUES_FILE": str(REPO / "queues.yaml")}
    )


def test_cli_plan_apply_destroy(topology: Topology) -> None:
    planned = _cli("plan")
    assert planned.exit_code == 0, planned.output
    assert f"+ queue {topology.queue_name('images')}" in planned.stdout
    creates = len(provision.plan(topology).actions)
    assert f"{creates} to create, 0 to update, 0 to delete" in planned.stdout

    applied = _cli("apply")
    assert applied.exit_code == 0, applied.output
    assert f"+ topic {topology.topic_name('orders')}" in applied.stdout
    assert applied.stdout.rstrip().endswith(f"{creates} changes applied")

    again = _cli("apply", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["is_empty"] is True
    assert _cli("apply").stdout.strip() == "no changes: already up to date"

    # No terminal and no --yes: refuse, delete nothing.
    refused = _cli("destroy")
    assert refused.exit_code == 2, refused.output
    assert "--yes" in refused.stderr
    assert f"- queue {topology.queue_name('billing')}" in refused.stdout
    assert _exists(topology, "billing")

    destroyed = _cli("destroy", "--yes", "--json")
    assert destroyed.exit_code == 0, destroyed.output
    assert json.loads(destroyed.stdout)["counts"]["delete"] == creates
    assert not _exists(topology, "billing")
    nothing = _cli("destroy")
    assert nothing.exit_code == 0, nothing.output
    assert "nothing to destroy" in nothing.stdout


# -- the idempotency guard's table -----------------------------------------------------

GUARD_YAML = """
version: 1
project: conveyor
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
job_types:
  mail.send: {topic: jobs, payload: "m:P", handler: "m:h", idempotency_guard: %(guard)s}
"""


def _guard_topology(environment: str, *, guard: bool = True) -> Topology:
    return parse_topology(GUARD_YAML % {"guard": str(guard).lower()}, environment=environment)


@pytest.fixture
def guarded(aws_env: AwsEnv) -> Topology:
    return _guard_topology(aws_env.environment)


def _ddb() -> DynamoDBClient:
    return aws.client("dynamodb")


def _table_name(topology: Topology) -> str:
    return f"{topology.project}-{topology.environment}-succeeded"


def _table_exists(name: str) -> bool:
    try:
        _ddb().describe_table(TableName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        return False
    return True


def _dynamodb_requests() -> dict[str, int]:
    return {k: n for k, n in aws.request_counts().items() if k.startswith("dynamodb.")}


def test_guard_table_is_created_with_ttl_and_a_second_apply_changes_nothing(
    guarded: Topology,
) -> None:
    name = _table_name(guarded)
    planned = provision.plan(guarded)
    assert f"+ table {name}" in [c.render() for c in planned.changes]
    assert len(_core(planned)) == 4  # topic, DLQ, queue, subscription

    result = provision.apply(guarded)
    assert result.changes == planned.changes
    table = _ddb().describe_table(TableName=name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert "SSEDescription" not in table  # encrypted with the AWS owned key
    ttl = _ddb().describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    tags = _ddb().list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {
        "conveyor:project": "conveyor",
        "conveyor:environment": guarded.environment,
    }

    again = provision.apply(guarded)
    assert again.is_empty
    assert again.changes == []
    assert provision.plan(guarded).changes == []


def test_guard_table_drift_is_planned_and_fixed(guarded: Topology) -> None:
    provision.apply(guarded)
    name = _table_name(guarded)
    ddb = _ddb()
    arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
    ddb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires_at"}
    )
    ddb.update_table(
        TableName=name,
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
    )
    ddb.untag_resource(ResourceArn=arn, TagKeys=["conveyor:environment"])

    plan = provision.plan(guarded)
    assert [c.render() for c in plan.changes] == [
        f"~ table {name}: BillingMode PROVISIONED → PAY_PER_REQUEST;"
        f" TimeToLive (none) → expires_at; tag:conveyor:environment (none) → {guarded.environment}"
    ]
    assert provision.apply(guarded).changes == plan.changes
    assert provision.plan(guarded).is_empty
    ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"


def test_destroy_deletes_the_guard_table(guarded: Topology) -> None:
    provision.apply(guarded)
    name = _table_name(guarded)

    preview = provision.plan_destroy(guarded)
    assert f"- table {name}" in [c.render() for c in preview.changes]
    assert provision.destroy(guarded).changes == preview.changes
    assert not _table_exists(name)

    assert provision.destroy(guarded).changes == []
    assert ("create", "table", name) in _storage(provision.plan(guarded))


def test_without_the_guard_its_table_is_left_alone(aws_env: AwsEnv) -> None:
    guarded = _guard_topology(aws_env.environment)
    unguarded = _guard_topology(aws_env.environment, guard=False)
    provision.apply(guarded)

    # Turning the guard off leaves the table alone: destroy deletes only what is declared
    # (the producer API's idempotency-key table is declared either way).
    guard_table = ("table", _table_name(guarded))
    assert all((c.kind, c.name) != guard_table for c in provision.plan(unguarded).changes)
    destroyed = provision.destroy(unguarded)
    assert [c.kind for c in _core(destroyed)] == ["subscription", "topic", "queue", "dlq"]
    assert all((c.kind, c.name) != guard_table for c in destroyed.changes)
    assert len(_core(provision.apply(unguarded))) == 4
    assert _table_exists(_table_name(guarded))

    provision.destroy(guarded)
    assert not _table_exists(_table_name(guarded))


def test_success_store_round_trip(guarded: Topology) -> None:
    provision.apply(guarded)
    name = _table_name(guarded)
    store = DynamoSuccessStore(name)
    assert store.succeeded("work", "job-1") is False

    before = int(time.time())
    store.mark_succeeded("work", "job-1")
    after = int(time.time())
    assert store.succeeded("work", "job-1") is True
    assert store.succeeded("audit", "job-1") is False  # per queue
    assert store.succeeded("work", "job-2") is False

    item = _ddb().get_item(TableName=name, Key={"pk": {"S": "work#job-1"}}, ConsistentRead=True)
    expires_at = int(str(item["Item"]["expires_at"]["N"]))
    assert before + REMEMBER_S <= expires_at <= after + REMEMBER_S
    assert REMEMBER_S == 15 * 86400

    # Expired, and not yet removed by DynamoDB's lazy TTL (moto never removes it): gone.
    _ddb().put_item(
        TableName=name, Item={"pk": {"S": "work#old"}, "expires_at": {"N": str(before - 1)}}
    )
    assert store.succeeded("work", "old") is False


def test_success_store_without_its_table_runs_jobs_and_logs(aws_env: AwsEnv) -> None:
    store = DynamoSuccessStore(_table_name(_guard_topology(aws_env.environment)))
    with capture_logs() as events:
        assert store.succeeded("work", "job-1") is False
        store.mark_succeeded("work", "job-1")  # does not raise
    assert [(e["event"], e["log_level"]) for e in events] == [
        ("idempotency.check_failed", "warning"),
        ("idempotency.record_failed", "warning"),
    ]
    assert all("ResourceNotFoundException" in e["error"] for e in events)


# -- the claim-check bucket ------------------------------------------------------------


def _s3() -> S3Client:
    return aws.client("s3")


def test_bucket_is_private_encrypted_expiring_and_drift_is_planned_and_fixed(
    guarded: Topology,
) -> None:
    name = _bucket_name(guarded)
    assert ("create", "bucket", name) in _storage(provision.apply(guarded))
    s3 = _s3()
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Expiration"] == {"Days": 30}
    assert rule["Filter"] == {"Prefix": ""}
    encryption = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=name)["TagSet"]}
    assert tags["conveyor:environment"] == guarded.environment
    assert provision.apply(guarded).changes == []

    # Drift: a foreign rule replaced ours, the public access block is gone.
    theirs = {
        "ID": "theirs",
        "Filter": {"Prefix": "tmp/"},
        "Status": "Enabled",
        "Expiration": {"Days": 1},
    }
    s3.put_bucket_lifecycle_configuration(
        Bucket=name,
        LifecycleConfiguration={"Rules": [theirs]},  # type: ignore[list-item]
    )
    s3.delete_public_access_block(Bucket=name)

    plan = provision.plan(guarded)
    assert [c.render() for c in plan.changes] == [
        f"~ bucket {name}: PublicAccessBlock (none) → all on; lifecycle expiry (none) → 30d"
    ]
    assert provision.apply(guarded).changes == plan.changes
    assert provision.plan(guarded).is_empty
    rules = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    assert sorted(r["ID"] for r in rules) == ["conveyor-expire-payloads", "theirs"]


def test_destroy_says_it_empties_the_bucket_asks_then_does(
    guarded: Topology, tmp_path: Path
) -> None:
    provision.apply(guarded)
    name = _bucket_name(guarded)
    for key in ("mail.send/a.json", "mail.send/b.json"):
        _s3().put_object(Bucket=name, Key=key, Body=b"{}")
    queues_file = tmp_path / "queues.yaml"
    queues_file.write_text(GUARD_YAML % {"guard": "true"})
    env = {"CONVEYOR_QUEUES_FILE": str(queues_file)}

    # No terminal and no --yes: the plan names the objects it would delete, and nothing goes.
    refused = CliRunner().invoke(app, ["destroy"], env=env)
    assert refused.exit_code == 2, refused.output
    assert f"- bucket {name} (holds 2 objects: all are deleted first)" in refused.stdout
    assert _s3().list_objects_v2(Bucket=name)["KeyCount"] == 2

    destroyed = CliRunner().invoke(app, ["destroy", "--yes"], env=env)
    assert destroyed.exit_code == 0, destroyed.output
    with pytest.raises(ClientError):
        _s3().head_bucket(Bucket=name)
    assert provision.destroy(guarded).changes == []
