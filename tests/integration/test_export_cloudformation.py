"""The CloudFormation export, created as a stack in the emulator, agrees with `infra apply`.

The whole template (IAM, ECS, Application Auto Scaling and alarms included) is
created as a stack; moto accepts it. moto's CloudFormation (5.2.5) implements
``AWS::SNS::Topic``, ``AWS::SQS::Queue`` and ``AWS::DynamoDB::Table``, and
``infra.provision.plan`` must then find nothing to create or update for them.
It ignores ``AWS::SNS::Subscription`` and ``AWS::SQS::QueuePolicy``: those are
compared property by property with :func:`infra.provision.desired.desired_state`,
what ``infra apply`` sets, instead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from infra import aws, provision
from infra.export import cloudformation_template
from infra.provision.buckets import PUBLIC_ACCESS_BLOCK, lifecycle_rule
from infra.provision.desired import desired_state
from infra.topology import load_topology, parse_topology
from tests.unit.test_export_cloudformation import EXAMPLE_YAML

if TYPE_CHECKING:
    from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _create_stack(aws_env: AwsEnv, template: dict[str, Any]) -> None:
    cfn = boto3.client("cloudformation", endpoint_url=aws_env.endpoint_url)
    # The workers' security groups are created in this VPC (moto checks that it exists).
    ec2 = boto3.client("ec2", endpoint_url=aws_env.endpoint_url)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    name = f"conveyor-{aws_env.environment}"
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[
            {"ParameterKey": "Image", "ParameterValue": "conveyor:test"},
            {"ParameterKey": "EnvironmentName", "ParameterValue": aws_env.environment},
            {"ParameterKey": "Subnets", "ParameterValue": "subnet-12345678"},
            {"ParameterKey": "VpcId", "ParameterValue": vpc},
        ],
        Capabilities=["CAPABILITY_IAM"],
    )
    deadline = time.monotonic() + 30
    while True:
        status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        if status != "CREATE_IN_PROGRESS" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == "CREATE_COMPLETE", status


@pytest.mark.parametrize("source", ["queues.yaml", "example"])
def test_stack_leaves_nothing_for_the_provisioner_to_do(aws_env: AwsEnv, source: str) -> None:
    """`infra plan` after the stack: nothing to create, nothing to change but what moto drops.

    The gaps are moto's, not the template's, and are checked against the template instead:
    its CloudFormation creates SNS topics without their ``Tags``, and it ignores
    ``AWS::SQS::QueuePolicy`` (so queues lack their ``Policy``) and ``AWS::SNS::Subscription``,
    it creates DynamoDB tables without their ``TimeToLiveSpecification``, and the S3
    bucket without its ``PublicAccessBlockConfiguration`` and ``LifecycleConfiguration``.
    """
    topology = (
        load_topology(REPO / source, environment=aws_env.environment)
        if source == "queues.yaml"
        else parse_topology(EXAMPLE_YAML, environment=aws_env.environment)
    )
    template = cloudformation_template(topology)
    _create_stack(aws_env, template)

    plan = provision.plan(topology)

    assert not [
        c.render() for c in plan.actions if c.action != "update" and c.kind != "subscription"
    ]
    state = desired_state(topology, aws.account_id(), aws.region_name())
    tables = {t.name: t for t in state.tables}
    declared_tables = {
        _sub(p["TableName"], aws_env.environment): p
        for p in _resources(template, "AWS::DynamoDB::Table")
    }
    assert set(declared_tables) == set(tables)
    for change in plan.actions:
        if change.kind == "subscription":
            assert change.action == "create"
        elif change.kind == "queue":
            assert set(change.details) == {"Policy"}, change.render()
        elif change.kind == "table":
            assert set(change.details) == {"TimeToLive"}, change.render()
            ttl = {"AttributeName": tables[change.name].ttl_attribute, "Enabled": True}
            assert declared_tables[change.name]["TimeToLiveSpecification"] == ttl
        elif change.kind == "bucket":
            # Encryption and tags were created; the public access block and the lifecycle
            # rule were dropped by moto: compared with the template instead.
            assert set(change.details) == {"PublicAccessBlock", "lifecycle expiry"}
            (bucket,) = _resources(template, "AWS::S3::Bucket")
            assert bucket["PublicAccessBlockConfiguration"] == PUBLIC_ACCESS_BLOCK
            (rule,) = bucket["LifecycleConfiguration"]["Rules"]
            want = lifecycle_rule(state.buckets[0].expiry_days)
            assert (rule["Id"], rule["Status"]) == (want["ID"], want["Status"])
            assert rule["ExpirationInDays"] == want["Expiration"]["Days"]
            assert rule["AbortIncompleteMultipartUpload"] == want["AbortIncompleteMultipartUpload"]
            assert "Prefix" not in rule  # the whole bucket, as Filter {"Prefix": ""} says
        else:
            assert change.kind == "topic", change.render()
            assert set(change.details) == {f"tag:{k}" for k in state.topics[0].tags}
    # The topics' tags, as the template declares them (resolved for this environment).
    for props in _resources(template, "AWS::SNS::Topic"):
        resolved = {
            t["Key"]: t["Value"]["Fn::Sub"].replace("${EnvironmentName}", aws_env.environment)
            if isinstance(t["Value"], dict)
            else t["Value"]
            for t in props["Tags"]
        }
        assert resolved == state.topics[0].tags


def _sub(value: Any, environment: str) -> Any:
    """A ``Fn::Sub`` name resolved for ``environment``."""
    return value["Fn::Sub"].replace("${EnvironmentName}", environment)


def _resources(template: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == type_]


def _resolve(value: Any, template: dict[str, Any], arns: dict[str, str]) -> Any:
    """Evaluate the template's intrinsics as CloudFormation would, for the emulator's account."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref" or (fn == "Fn::GetAtt" and arg[1] == "Arn"):
            return arns[arg if fn == "Ref" else arg[0]]
    if isinstance(value, dict):
        return {k: _resolve(v, template, arns) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, template, arns) for v in value]
    return value


def test_subscriptions_and_policies_match_what_apply_sets(aws_env: AwsEnv) -> None:
    """moto's CloudFormation ignores these two types: compare their properties with desired."""
    topology = load_topology(REPO / "queues.yaml", environment=aws_env.environment)
    template = cloudformation_template(topology)
    state = desired_state(topology, aws.account_id(), aws.region_name())
    arns: dict[str, str] = {}
    for logical, resource in template["Resources"].items():
        name = resource["Properties"].get("TopicName") or resource["Properties"].get("QueueName")
        if name is not None:
            physical = name["Fn::Sub"].replace("${EnvironmentName}", aws_env.environment)
            found = [t.arn for t in state.topics if t.name == physical]
            found += [q.arn for q in state.all_queues if q.name == physical]
            (arns[logical],) = found

    subscriptions = {
        (s["TopicArn"], s["Endpoint"]): s
        for s in _resolve(_resources(template, "AWS::SNS::Subscription"), template, arns)
    }
    assert len(subscriptions) == len(state.subscriptions)
    for sub in state.subscriptions:
        props = subscriptions[(sub.topic_arn, sub.queue_arn)]
        assert props["Protocol"] == "sqs"
        assert props["RawMessageDelivery"] is (sub.attributes["RawMessageDelivery"] == "true")
        if sub.filter_policy is None:
            assert "FilterPolicy" not in props
        else:
            assert props["FilterPolicyScope"] == sub.attributes["FilterPolicyScope"]
            assert props["FilterPolicy"] == json.loads(sub.attributes["FilterPolicy"])

    policies = _resolve(_resources(template, "AWS::SQS::QueuePolicy"), template, arns)
    by_queue = {p["Queues"][0]: p["PolicyDocument"] for p in policies}
    wanted = {q.arn: q.policy for q in state.queues if q.policy is not None}
    assert set(by_queue) == set(wanted)
    for arn, policy in wanted.items():
        document = by_queue[arn]
        expected = json.loads(policy)
        # The policy's Id is built with Fn::Sub (the queue ARN is not yet known to the template).
        assert document.pop("Id")["Fn::Sub"].endswith("/conveyor")
        expected.pop("Id")
        assert document == expected
