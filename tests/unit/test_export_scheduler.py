"""The scheduler in the exports: the timer table, its least-privilege role, its ECS service and
its Kubernetes Deployment."""

from __future__ import annotations

from typing import Any

from infra.export import cloudformation_template
from infra.export.kubernetes import kubernetes_manifests
from infra.topology import Topology, load_topology
from tests import REPO


def _sample() -> Topology:
    return load_topology(REPO / "queues.yaml", environment="dev")


def _of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == type_}


def _statements(role: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (policy,) = role["Policies"]
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def test_the_timer_table_has_its_sort_key_and_due_index() -> None:
    table = _of_type(cloudformation_template(_sample()), "AWS::DynamoDB::Table")["TableTimers"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "due"
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_the_scheduler_role_publishes_and_uses_the_timer_table_only() -> None:
    topology = _sample()
    template = cloudformation_template(topology)
    roles = _of_type(template, "AWS::IAM::Role")
    statements = _statements(roles["SchedulerRole"])
    assert set(statements) == {
        "PublishDueJobs",
        "Timers",
        "DueTimers",
        "JobLedger",
        "ClaimCheckPayloads",
    }
    assert statements["PublishDueJobs"]["Action"] == ["sns:Publish"]
    assert len(statements["PublishDueJobs"]["Resource"]) == len(topology.topics)
    assert statements["Timers"]["Resource"] == [{"Fn::GetAtt": ["TableTimers", "Arn"]}]
    assert statements["DueTimers"] == {
        "Sid": "DueTimers",
        "Effect": "Allow",
        "Action": ["dynamodb:Query"],
        "Resource": [{"Fn::Sub": "${TableTimers.Arn}/index/due"}],
    }
    assert statements["JobLedger"]["Action"] == ["dynamodb:BatchWriteItem"]
    # The API stores delayed jobs; it never claims or deletes them.
    api = _statements(roles["ApiRole"])["DelayedJobs"]
    # Store, lower the watermark; cancel: read one, delete it.
    assert api["Action"] == [
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
    ]
    # No worker touches the timer table.
    for logical, role in roles.items():
        if logical.startswith("WorkerRole"):
            assert "TableTimers" not in str(role)


def test_the_scheduler_runs_as_an_ecs_service_of_two_tasks() -> None:
    template = cloudformation_template(_sample())
    service = _of_type(template, "AWS::ECS::Service")["ServiceScheduler"]
    assert service["DesiredCount"] == 2
    task = _of_type(template, "AWS::ECS::TaskDefinition")["TaskDefinitionScheduler"]
    (container,) = task["ContainerDefinitions"]
    assert container["Command"] == ["scheduler", "--health-port", "8002"]
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert template["Outputs"]["SchedulerRoleArn"]


def test_a_topology_without_pools_still_gets_its_scheduler() -> None:
    topology = _sample().model_copy(update={"pools": {}})
    template = cloudformation_template(topology)
    assert "Cluster" in template["Resources"]
    assert "ServiceScheduler" in template["Resources"]


def test_the_kubernetes_export_runs_two_schedulers_probed_on_healthz() -> None:
    manifests = kubernetes_manifests(_sample(), image="conveyor:test")
    (deployment,) = [
        m
        for m in manifests
        if m["kind"] == "Deployment" and m["metadata"]["name"].endswith("-scheduler")
    ]
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["scheduler", "--health-port", "8002"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    accounts = [m for m in manifests if m["kind"] == "ServiceAccount"]
    assert deployment["metadata"]["name"] in {m["metadata"]["name"] for m in accounts}
