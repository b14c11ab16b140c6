"""The CloudFormation export's hardening: who may publish, TLS only, Retain, security groups.

Also the ``topics.<name>.publishers`` key of queues.yaml that feeds the topic policies,
and the worker's health bind address in the exports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.export import cloudformation_template
from infra.export.kubernetes import kubernetes_manifests
from infra.topology import TopologyError, load_topology, parse_topology
from tests.unit.test_export_cloudformation import EXAMPLE_YAML, TOPOLOGIES

ROLE = "arn:aws:iam::123456789012:role/checkout/orders-producer"
ACCOUNT = "arn:aws:iam::210987654321:root"
API_ROLE = {"Fn::GetAtt": ["ApiRole", "Arn"]}
SCHEDULER_ROLE = {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
TLS_CONDITION = {"Bool": {"aws:SecureTransport": "false"}}


def _with_publishers(*publishers: str) -> str:
    return EXAMPLE_YAML.replace(
        "  jobs: {}", f"  jobs: {{publishers: {json.dumps(list(publishers))}}}"
    )


def _resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == type_}


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = resource["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_only_the_api_role_and_the_listed_publishers_may_publish() -> None:
    template = cloudformation_template(parse_topology(_with_publishers(ROLE, ACCOUNT)))
    policies = _resources(template, "AWS::SNS::TopicPolicy")
    by_topic = {p["Properties"]["Topics"][0]["Ref"]: p for p in policies.values()}
    assert set(by_topic) == set(_resources(template, "AWS::SNS::Topic"))
    for topic, policy in by_topic.items():
        assert policy["Properties"]["Topics"] == [{"Ref": topic}]
        allows = [s for s in _statements(policy) if s["Effect"] == "Allow"]
        (allow,) = allows
        assert allow["Action"] == "sns:Publish"
        assert allow["Resource"] == {"Ref": topic}
        denies = [s for s in _statements(policy) if s["Effect"] == "Deny"]
        (deny,) = [s for s in denies if s["Action"] == "sns:Publish"]
        assert deny["Principal"] == "*"
        assert deny["Resource"] == {"Ref": topic}
        # The scheduler publishes delayed jobs: its role is named beside the API's.
        if topic == "TopicJobs":
            assert allow["Principal"] == {"AWS": [API_ROLE, SCHEDULER_ROLE, ROLE, ACCOUNT]}
            # Every principal but the API role and the listed role; a listed account as a whole.
            assert deny["Condition"] == {
                "ArnNotEquals": {"aws:PrincipalArn": [API_ROLE, SCHEDULER_ROLE, ROLE]},
                "StringNotEquals": {"aws:PrincipalAccount": ["210987654321"]},
            }
        else:  # a topic that lists nobody: the API role alone (and the scheduler's)
            assert allow["Principal"] == {"AWS": [API_ROLE, SCHEDULER_ROLE]}
            assert deny["Condition"] == {
                "ArnNotEquals": {"aws:PrincipalArn": [API_ROLE, SCHEDULER_ROLE]}
            }


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_every_queue_topic_and_bucket_policy_refuses_requests_without_tls(name: str) -> None:
    template = cloudformation_template(TOPOLOGIES[name]())
    checked = 0
    for type_, action, target in (
        ("AWS::SQS::QueuePolicy", "sqs:*", lambda p: p["Queues"][0]["Ref"]),
        ("AWS::SNS::TopicPolicy", "sns:*", lambda p: p["Topics"][0]["Ref"]),
        ("AWS::S3::BucketPolicy", "s3:*", lambda p: p["Bucket"]["Ref"]),
    ):
        policies = _resources(template, type_)
        assert policies, type_
        for policy in policies.values():
            (tls,) = [s for s in _statements(policy) if s.get("Condition") == TLS_CONDITION]
            assert (tls["Effect"], tls["Principal"], tls["Action"]) == ("Deny", "*", action)
            resources = tls["Resource"] if isinstance(tls["Resource"], list) else [tls["Resource"]]
            # The statement names the policy's own resource (by reference: ARN or Ref).
            assert target(policy["Properties"]) in json.dumps(resources)
            checked += 1
    bucket = next(iter(_resources(template, "AWS::S3::Bucket")))
    (bucket_policy,) = _resources(template, "AWS::S3::BucketPolicy").values()
    (tls,) = _statements(bucket_policy)
    # The bucket itself and every object in it.
    assert tls["Resource"] == [
        {"Fn::GetAtt": [bucket, "Arn"]},
        {"Fn::Sub": f"${{{bucket}.Arn}}/*"},
    ]
    assert checked == sum(
        len(_resources(template, t))
        for t in ("AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy", "AWS::S3::BucketPolicy")
    )


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_dlqs_tables_and_the_bucket_outlive_the_stack(name: str) -> None:
    template = cloudformation_template(TOPOLOGIES[name]())
    kept = [
        *(r for k, r in _resources(template, "AWS::SQS::Queue").items() if k.startswith("Dlq")),
        *_resources(template, "AWS::DynamoDB::Table").values(),
        *_resources(template, "AWS::S3::Bucket").values(),
    ]
    assert len(kept) >= 4
    for resource in kept:
        assert resource["DeletionPolicy"] == "Retain"
        assert resource["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_each_ecs_service_has_its_own_security_group_without_ingress(name: str) -> None:
    template = cloudformation_template(TOPOLOGIES[name]())
    groups = _resources(template, "AWS::EC2::SecurityGroup")
    services = _resources(template, "AWS::ECS::Service")
    used = []
    for service in services.values():
        network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        ((group, attribute),) = [g["Fn::GetAtt"] for g in network["SecurityGroups"]]
        assert attribute == "GroupId"
        used.append(group)
    assert sorted(used) == sorted(groups)  # one each, none unused
    assert template["Parameters"]["VpcId"]["Type"] == "AWS::EC2::VPC::Id"
    for group in groups.values():
        props = group["Properties"]
        assert props["VpcId"] == {"Ref": "VpcId"}
        assert "SecurityGroupIngress" not in props
        (egress,) = props["SecurityGroupEgress"]
        assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("tcp", 443, 443)


def test_health_listens_on_loopback_on_ecs_and_beyond_it_on_kubernetes() -> None:
    topology = parse_topology(EXAMPLE_YAML)
    template = cloudformation_template(topology)
    for task in _resources(template, "AWS::ECS::TaskDefinition").values():
        (container,) = task["Properties"]["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        # The ECS health check runs inside the container, on loopback (a worker's, or the
        # scheduler's).
        host = env.get("CONVEYOR_WORKER_HEALTH_HOST") or env["CONVEYOR_SCHEDULING_HEALTH_HOST"]
        assert host == "127.0.0.1"
        assert "http://127.0.0.1:" in container["HealthCheck"]["Command"][-1]
    workers = [
        m
        for m in kubernetes_manifests(topology, image="conveyor:test")
        if m["kind"] == "Deployment" and "worker" in m["metadata"]["name"]
    ]
    assert len(workers) == len(topology.pools)
    for deployment in workers:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        # The kubelet probes the pod's IP.
        host = {"name": "CONVEYOR_WORKER_HEALTH_HOST", "value": "0.0.0.0"}  # noqa: S104
        assert host in container["env"]


def test_cfn_lint_accepts_listed_publishers(tmp_path: Path) -> None:
    path = tmp_path / "template.json"
    template = cloudformation_template(parse_topology(_with_publishers(ROLE, ACCOUNT)))
    path.write_text(json.dumps(template))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("checkout", "is not an IAM principal ARN"),
        ("*", "is not an IAM principal ARN"),
        ("arn:aws:iam::123456789012:role/*", "is not an IAM principal ARN"),
        ("arn:aws:iam::12345:role/producer", "is not an IAM principal ARN"),
        ("arn:aws:sts::123456789012:assumed-role/producer/s", "is not an IAM principal ARN"),
        ("arn:aws:sns:us-east-1:123456789012:topic", "is not an IAM principal ARN"),
    ],
)
def test_a_bad_publisher_names_the_file_the_key_and_the_problem(
    tmp_path: Path, entry: str, problem: str
) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(_with_publishers(ROLE, entry))
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    message = str(caught.value)
    assert f"{path}: topics.jobs.publishers[1]: '{entry}' {problem}" in message, message


def test_a_publisher_listed_twice_is_a_problem() -> None:
    with pytest.raises(TopologyError, match=r"topics\.jobs\.publishers\[1\]: .* listed twice"):
        parse_topology(_with_publishers(ROLE, ROLE))


def test_publishers_accept_roles_users_and_accounts_of_every_partition() -> None:
    topology = parse_topology(
        _with_publishers(
            ROLE,
            ACCOUNT,
            "arn:aws:iam::123456789012:user/ci",
            "arn:aws-cn:iam::123456789012:role/producer",
            "arn:aws-us-gov:iam::123456789012:role/a/b/producer",
        )
    )
    assert len(topology.topics["jobs"].publishers) == 5
    assert topology.topics["ordered_events"].publishers == []
