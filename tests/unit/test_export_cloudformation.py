"""The CloudFormation export: valid for cfn-lint, least-privilege IAM, derived from queues.yaml."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from infra.export import cloudformation_template
from infra.export.names import DEFAULT_BACKLOG_TARGET
from infra.provision.desired import desired_state
from infra.topology import Topology, load_topology, parse_topology
from tests import REPO

#: FIFO topic and queue, an idempotency guard on one job type, names with - and _,
#: a pool that needs the guard's table and one that does not.
EXAMPLE_YAML = """
version: 1
project: ex
environment: unit
topics:
  jobs: {}
  ordered_events: {fifo: true, content_based_deduplication: true}
queues:
  work-a:
    subscriptions: [{topic: jobs}]
  audit:
    subscriptions: [{topic: jobs, job_types: [test.once]}]
  ledger:
    fifo: true
    subscriptions: [{topic: ordered_events}]
job_types:
  test.once:
    {topic: jobs, payload: "tests.jobs:Note", handler: "tests.jobs:record", idempotency_guard: true}
  test.record: {topic: jobs, payload: "tests.jobs:Note", handler: "tests.jobs:record"}
  test.ordered: {topic: ordered_events, payload: "tests.jobs:Note", handler: "tests.jobs:record"}
pools:
  main: {queues: [work-a, audit], replicas: {min: 0, max: 5}}
  ordered: {queues: [ledger]}
"""


def example() -> Topology:
    return parse_topology(EXAMPLE_YAML)


def sample() -> Topology:
    return load_topology(REPO / "queues.yaml", environment="dev")


TOPOLOGIES = {"sample": sample, "example": example}


def _of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == type_}


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_cfn_lint_finds_no_errors(name: str, tmp_path: Path) -> None:
    path = tmp_path / "template.json"
    path.write_text(json.dumps(cloudformation_template(TOPOLOGIES[name]())))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    # cfn-lint's exit code is a bit mask: 1 fatal, 2 error, 4 warning, 8 informational.
    assert result.returncode & 0b11 == 0, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout  # and, today, not even a warning


def _walk_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for role in _of_type(template, "AWS::IAM::Role").values():
        for policy in role.get("Policies", []):
            statements += policy["PolicyDocument"]["Statement"]
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_iam_policies_have_no_wildcards(name: str) -> None:
    template = cloudformation_template(TOPOLOGIES[name]())
    statements = _walk_statements(template)
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            assert "*" not in action, statement
            assert re.fullmatch(r"(sqs|sns|dynamodb|s3):[A-Z][A-Za-z]+", action), action
        for resource in _as_list(statement["Resource"]):
            # Every resource is one of the stack's own: a reference, never "*" or a pattern,
            # except the claim-check objects of one job type in the stack's own bucket
            # (object keys are job ids: they cannot be listed in advance).
            assert isinstance(resource, dict), statement
            index = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/(\w+)", resource.get("Fn::Sub", ""))
            if index:  # the scheduler queries the timer table's due-time index, by name
                assert template["Resources"][index[1]]["Type"] == "AWS::DynamoDB::Table"
                assert statement["Action"] == ["dynamodb:Query"], statement
                continue
            if set(resource) == {"Fn::Sub"}:
                match = re.fullmatch(r"\$\{(\w+)\.Arn\}/([a-z0-9_.-]+)/\*", resource["Fn::Sub"])
                assert match, resource
                assert template["Resources"][match[1]]["Type"] == "AWS::S3::Bucket"
                assert match[2] in TOPOLOGIES[name]().job_types
                assert statement["Action"] in (["s3:GetObject"], ["s3:PutObject"]), statement
                continue
            assert set(resource) <= {"Ref", "Fn::GetAtt"}, resource
    # Only the task execution role uses a managed policy (pulling the image, writing logs).
    for logical, role in _of_type(template, "AWS::IAM::Role").items():
        if "ManagedPolicyArns" in role:
            assert logical == "TaskExecutionRole"


def _statement(role: dict[str, Any], sid: str) -> dict[str, Any]:
    (policy,) = role["Policies"]
    return next(s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == sid)


def test_worker_roles_reach_only_their_pool_queues_and_the_table_if_guarded() -> None:
    template = cloudformation_template(example())
    roles = _of_type(template, "AWS::IAM::Role")
    main, ordered = roles["WorkerRoleMain"], roles["WorkerRoleOrdered"]

    consume = _statement(main, "ConsumeQueues")
    assert consume["Resource"] == [
        {"Fn::GetAtt": ["QueueWorkA", "Arn"]},
        {"Fn::GetAtt": ["QueueAudit", "Arn"]},
    ]
    assert set(consume["Action"]) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    dead_letter = _statement(main, "DeadLetter")
    assert set(dead_letter["Action"]) == {"sqs:SendMessage", "sqs:GetQueueUrl"}
    assert dead_letter["Resource"] == [
        {"Fn::GetAtt": ["DlqWorkA", "Arn"]},
        {"Fn::GetAtt": ["DlqAudit", "Arn"]},
    ]
    guard = _statement(main, "IdempotencyGuard")
    assert set(guard["Action"]) == {"dynamodb:GetItem", "dynamodb:PutItem"}
    assert guard["Resource"] == [{"Fn::GetAtt": ["TableSucceeded", "Arn"]}]
    (policy,) = ordered["Policies"]
    assert "IdempotencyGuard" not in {s["Sid"] for s in policy["PolicyDocument"]["Statement"]}
    assert _statement(ordered, "ConsumeQueues")["Resource"] == [
        {"Fn::GetAtt": ["QueueLedger", "Arn"]}
    ]


def test_api_role_only_publishes_to_the_topics() -> None:
    template = cloudformation_template(example())
    api = _of_type(template, "AWS::IAM::Role")["ApiRole"]
    statement = _statement(api, "PublishJobs")
    assert set(statement["Action"]) == {"sns:Publish", "sns:GetTopicAttributes"}
    assert statement["Resource"] == [{"Ref": "TopicJobs"}, {"Ref": "TopicOrderedEvents"}]


def _sub(value: Any, environment: str = "unit") -> Any:
    """A value with ``${EnvironmentName}`` resolved; other placeholders left as they are."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return value["Fn::Sub"].replace("${EnvironmentName}", environment)
    return value


def test_queues_carry_the_attributes_infra_apply_sets() -> None:
    topology = example()
    template = cloudformation_template(topology)
    state = desired_state(topology, "123456789012", "us-east-1")
    queues = {_sub(p["QueueName"]): p for p in _of_type(template, "AWS::SQS::Queue").values()}
    assert set(queues) == {q.name for q in state.all_queues}
    for queue in state.all_queues:
        props = queues[queue.name]
        for key, value in queue.attributes.items():
            found = props[key]
            if key == "RedrivePolicy":
                want = json.loads(value)
                assert found["maxReceiveCount"] == want["maxReceiveCount"]
                assert found["deadLetterTargetArn"]["Fn::GetAtt"][1] == "Arn"
            elif key == "RedriveAllowPolicy":
                # By ARN, built with Fn::Sub: a reference would close a circle queue ↔ DLQ.
                (source,) = found["sourceQueueArns"]
                concrete = {
                    "redrivePermission": found["redrivePermission"],
                    "sourceQueueArns": [_sub(source).replace("${AWS::Partition}", "aws")
                                        .replace("${AWS::Region}", "us-east-1")
                                        .replace("${AWS::AccountId}", "123456789012")],
                }  # fmt: skip
                assert concrete == json.loads(value)
            elif isinstance(found, bool):
                assert str(found).lower() == value, key
            else:
                assert str(found) == value, key
    ledger = queues["ex-unit-ledger.fifo"]
    assert ledger["FifoQueue"] is True
    assert ledger["ContentBasedDeduplication"] is False


def test_topics_subscriptions_and_table() -> None:
    template = cloudformation_template(example())
    topics = _of_type(template, "AWS::SNS::Topic")
    assert topics["TopicOrderedEvents"]["FifoTopic"] is True
    assert topics["TopicOrderedEvents"]["ContentBasedDeduplication"] is True
    assert "FifoTopic" not in topics["TopicJobs"]
    subs = _of_type(template, "AWS::SNS::Subscription")
    audit = subs["SubscriptionJobsAudit"]
    assert audit["RawMessageDelivery"] is True
    assert audit["FilterPolicyScope"] == "MessageBody"
    assert audit["FilterPolicy"] == {"type": ["test.once"]}
    assert "FilterPolicy" not in subs["SubscriptionJobsWorkA"]
    policy = _of_type(template, "AWS::SQS::QueuePolicy")["QueuePolicyAudit"]
    # The other statement refuses requests without TLS (tests/unit/test_export_hardening.py).
    (statement,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": [{"Ref": "TopicJobs"}]}}
    assert statement["Resource"] == {"Fn::GetAtt": ["QueueAudit", "Arn"]}
    tables = _of_type(template, "AWS::DynamoDB::Table")
    assert {_sub(t["TableName"]) for t in tables.values()} == {
        "ex-unit-succeeded",
        "ex-unit-idempotency",  # the producer API's idempotency keys, always
        "ex-unit-timers",  # the scheduler's delayed jobs, always
    }
    table = tables["TableSucceeded"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]


def test_no_guard_table_without_a_guarded_job_type() -> None:
    template = cloudformation_template(sample())
    assert "TableSucceeded" not in _of_type(template, "AWS::DynamoDB::Table")
    assert "TableSucceeded" not in json.dumps(_of_type(template, "AWS::IAM::Role"))


def test_ledger_table_and_payload_bucket() -> None:
    template = cloudformation_template(sample())
    ledger = _of_type(template, "AWS::DynamoDB::Table")["TableJobs"]
    assert _sub(ledger["TableName"], "dev") == "conveyor-dev-jobs"
    assert ledger["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    (bucket,) = _of_type(template, "AWS::S3::Bucket").values()
    name, variables = bucket["BucketName"]["Fn::Sub"]
    assert name == "conveyor-${Env}-payloads-${AWS::AccountId}-${AWS::Region}"
    # "_" is not allowed in bucket names: the environment's are turned into "-".
    assert variables == {
        "Env": {"Fn::Join": ["-", {"Fn::Split": ["_", {"Ref": "EnvironmentName"}]}]}
    }
    assert bucket["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ]
    }
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert (rule["Status"], rule["ExpirationInDays"]) == ("Enabled", 30)


def test_api_and_pools_reach_the_ledger_and_their_payloads_only() -> None:
    topology = sample()
    template = cloudformation_template(topology)
    roles = _of_type(template, "AWS::IAM::Role")
    api = roles["ApiRole"]
    put = _statement(api, "ClaimCheckPayloads")
    assert put["Action"] == ["s3:PutObject"]
    assert put["Resource"] == [
        {"Fn::Sub": f"${{BucketPayloads.Arn}}/{jt}/*"} for jt in sorted(topology.job_types)
    ]
    ledger = _statement(api, "JobLedger")
    # Status reads, queued records; cancellation marks queues and records unpublished jobs.
    assert set(ledger["Action"]) == {
        "dynamodb:BatchWriteItem",
        "dynamodb:BatchGetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
    }
    assert ledger["Resource"] == [{"Fn::GetAtt": ["TableJobs", "Arn"]}]

    media = roles["WorkerRoleMedia"]
    assert _statement(media, "JobLedger")["Action"] == ["dynamodb:UpdateItem"]
    get = _statement(media, "ClaimCheckPayloads")
    assert get["Action"] == ["s3:GetObject"]
    # Only the job types its queues receive: image.* (media), not order.placed.
    assert get["Resource"] == [
        {"Fn::Sub": "${BucketPayloads.Arn}/image.resize/*"},
        {"Fn::Sub": "${BucketPayloads.Arn}/image.thumbnail/*"},
    ]
    listing = _statement(media, "ClaimCheckMissingIsVisible")
    assert (listing["Action"], listing["Resource"]) == (
        ["s3:ListBucket"],
        [{"Fn::GetAtt": ["BucketPayloads", "Arn"]}],
    )


def test_no_ledger_permissions_without_a_ledger() -> None:
    template = cloudformation_template(example())
    assert "TableJobs" not in _of_type(template, "AWS::DynamoDB::Table")
    for role in _of_type(template, "AWS::IAM::Role").values():
        assert "JobLedger" not in json.dumps(role)


def test_ecs_services_scale_on_backlog_per_task_within_the_replica_bounds() -> None:
    topology = sample()
    template = cloudformation_template(topology)
    services = _of_type(template, "AWS::ECS::Service")
    targets = _of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    policies = _of_type(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    tasks = _of_type(template, "AWS::ECS::TaskDefinition")
    for pool, spec in topology.pools.items():
        suffix = pool.capitalize()
        assert services[f"Service{suffix}"]["DesiredCount"] == spec.replicas.min
        assert targets[f"ScalableTarget{suffix}"]["MinCapacity"] == spec.replicas.min
        assert targets[f"ScalableTarget{suffix}"]["MaxCapacity"] == spec.replicas.max
        (container,) = tasks[f"TaskDefinition{suffix}"]["ContainerDefinitions"]
        assert container["Image"] == {"Ref": "Image"}
        assert container["Command"][:3] == ["worker", "--pool", pool]
        config = policies[f"ScalingPolicy{suffix}"]["TargetTrackingScalingPolicyConfiguration"]
        assert config["TargetValue"] == DEFAULT_BACKLOG_TARGET
        metrics = config["CustomizedMetricSpecification"]["Metrics"]
        queues = [
            m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
            for m in metrics
            if m["Id"].startswith("visible")
        ]
        assert queues == [f"Queue{q.capitalize()}" for q in spec.queues]
        (returned,) = [m for m in metrics if m["ReturnData"]]
        assert returned["Expression"].endswith("/ tasks")


def test_alarms_on_every_dlq_and_every_queue_age() -> None:
    topology = sample()
    alarms = _of_type(cloudformation_template(topology), "AWS::CloudWatch::Alarm").values()
    dlq = [a for a in alarms if a["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    age = [a for a in alarms if a["MetricName"] == "ApproximateAgeOfOldestMessage"]
    assert len(dlq) == len(age) == len(topology.queues)
    assert all(
        a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold" for a in dlq
    )
    assert {a["Dimensions"][0]["Value"]["Fn::GetAtt"][0] for a in dlq} == {
        f"Dlq{q.capitalize()}" for q in topology.queues
    }


def test_parameters_and_logical_ids() -> None:
    template = cloudformation_template(example())
    params = template["Parameters"]
    assert set(params) == {"Image", "EnvironmentName", "Subnets", "VpcId"}
    assert params["Subnets"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert params["EnvironmentName"]["Default"] == "unit"
    assert all(re.fullmatch(r"[A-Za-z0-9]+", k) for k in template["Resources"])


def test_cli_writes_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(REPO / "queues.yaml"))
    monkeypatch.setenv("CONVEYOR_ENVIRONMENT", "dev")
    out = tmp_path / "out" / "stack.json"
    result = CliRunner().invoke(app, ["infra", "export", "cloudformation", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == cloudformation_template(sample())
    printed = CliRunner().invoke(app, ["infra", "export", "cloudformation"])
    assert json.loads(printed.stdout) == cloudformation_template(sample())
