"""The web console in the exports: a least-privilege role per mode, its ECS service, its
Kubernetes Deployment and RBAC; nothing of it unless asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conveyor.cli import app
from infra.export import cloudformation_template, kubernetes_manifests
from infra.export.cfn_console import CONSOLE_MODES, CONSOLE_PORT, ConsoleMode
from infra.topology import Topology, load_topology
from tests import REPO

READS = {
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibility",
    "cloudwatch:GetMetricStatistics",
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "ecs:DescribeServices",
    "ecs:DescribeTasks",
    "ecs:ListTasks",
}
WRITES = {
    "sqs:DeleteMessage",
    "sqs:SendMessage",
    "dynamodb:UpdateItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "sns:Publish",
    "s3:PutObject",
    "ecs:UpdateService",
}


def sample() -> Topology:
    return load_topology(REPO / "queues.yaml")


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    (policy,) = template["Resources"]["ConsoleRole"]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return statements


def _actions(template: dict[str, Any]) -> set[str]:
    return {a for s in _statements(template) for a in s["Action"]}


def _by_sid(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in _statements(template)}


def test_no_console_unless_asked_for() -> None:
    template = cloudformation_template(sample())
    assert "ConsoleRole" not in template["Resources"]
    assert not any("onsole" in logical for logical in template["Resources"])
    assert "ConsoleKeys" not in template["Parameters"]
    manifests = kubernetes_manifests(sample())
    assert not any("console" in m["metadata"]["name"] for m in manifests)


def test_a_read_only_console_may_read_and_nothing_more() -> None:
    template = cloudformation_template(sample(), console="read-only")
    assert _actions(template) == READS
    sids = _by_sid(template)
    dlqs = [{"Fn::GetAtt": [f"Dlq{q.capitalize()}", "Arn"]} for q in sorted(sample().queues)]
    queues = [{"Fn::GetAtt": [f"Queue{q.capitalize()}", "Arn"]} for q in sorted(sample().queues)]
    # Peeking receives and releases messages of the DLQs only, never of a live queue.
    assert sids["PeekDeadLetters"]["Resource"] == dlqs
    assert sids["ReadQueues"]["Resource"] == queues + dlqs
    assert sids["ReadJobLedger"]["Resource"] == [{"Fn::GetAtt": ["TableJobs", "Arn"]}]
    (container,) = template["Resources"]["TaskDefinitionConsole"]["Properties"][
        "ContainerDefinitions"
    ]
    assert container["Command"][-1] == "--read-only"


def test_an_operating_console_may_redrive_delete_cancel_and_scale_its_own_resources() -> None:
    topology = sample()
    template = cloudformation_template(topology, console="operate")
    assert _actions(template) == READS | WRITES
    sids = _by_sid(template)
    dlqs = [{"Fn::GetAtt": [f"Dlq{q.capitalize()}", "Arn"]} for q in sorted(topology.queues)]
    queues = [{"Fn::GetAtt": [f"Queue{q.capitalize()}", "Arn"]} for q in sorted(topology.queues)]
    assert sids["RedriveAndDeleteDeadLetters"]["Resource"] == dlqs
    assert sids["RedriveToSourceQueues"]["Resource"] == queues
    services = [{"Ref": f"Service{p.capitalize()}"} for p in topology.pools]
    assert sids["ScalePools"] == {
        "Sid": "ScalePools",
        "Effect": "Allow",
        "Action": ["ecs:UpdateService"],
        "Resource": services,  # the pools' services: not the console's, not the scheduler's
    }
    (container,) = template["Resources"]["TaskDefinitionConsole"]["Properties"][
        "ContainerDefinitions"
    ]
    assert "--read-only" not in container["Command"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["CONVEYOR_SCALING_BACKEND"] == "ecs"
    assert env["CONVEYOR_API_KEYS"] == {"Ref": "ConsoleKeys"}


@pytest.mark.parametrize("mode", CONSOLE_MODES)
def test_console_statements_name_the_stacks_own_resources(mode: ConsoleMode) -> None:
    template = cloudformation_template(sample(), console=mode)
    for statement in _statements(template):
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert "*" not in action
        if statement["Action"] == ["cloudwatch:GetMetricStatistics"]:
            # CloudWatch's metric reads take no resource-level permission.
            assert statement["Resource"] == ["*"]
            continue
        for resource in statement["Resource"]:
            assert isinstance(resource, dict), statement
            if "Fn::Sub" in resource:
                # ECS tasks and container instances of this stack's cluster, and a job
                # type's claim-check objects (their ids are made at run time): the only
                # patterns.
                assert resource["Fn::Sub"].endswith(
                    (":task/${Cluster}/*", ":container-instance/${Cluster}/*")
                ) or resource["Fn::Sub"].startswith("${BucketPayloads.Arn}/"), resource
                continue
            target = resource.get("Ref") or resource["Fn::GetAtt"][0]
            assert target in template["Resources"], resource


@pytest.mark.parametrize("mode", CONSOLE_MODES)
def test_cfn_lint_accepts_the_console(mode: ConsoleMode, tmp_path: Path) -> None:
    path = tmp_path / "template.json"
    path.write_text(json.dumps(cloudformation_template(sample(), console=mode)))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mode", CONSOLE_MODES)
def test_topic_policies_let_the_console_publish_only_when_it_triggers_schedules(
    mode: ConsoleMode,
) -> None:
    template = cloudformation_template(sample(), console=mode)
    policies = [
        r["Properties"]["PolicyDocument"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::SNS::TopicPolicy"
    ]
    assert policies
    for policy in policies:
        named = json.dumps(policy["Statement"][0]["Principal"])
        assert ("ConsoleRole" in named) is (mode == "operate")


def test_the_console_service_is_reached_only_from_the_given_range() -> None:
    template = cloudformation_template(sample(), console="operate")
    group = template["Resources"]["SecurityGroupConsole"]["Properties"]
    (ingress,) = group["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"]) == (CONSOLE_PORT, CONSOLE_PORT)
    assert ingress["CidrIp"] == {"Ref": "ConsoleIngressCidr"}
    (egress,) = group["SecurityGroupEgress"]
    assert (egress["FromPort"], egress["ToPort"]) == (443, 443)
    service = template["Resources"]["ServiceConsole"]["Properties"]
    assert service["DesiredCount"] == 1
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["SecurityGroups"] == [{"Fn::GetAtt": ["SecurityGroupConsole", "GroupId"]}]
    assert template["Parameters"]["ConsoleKeys"]["NoEcho"] is True


def _k8s_console(mode: ConsoleMode) -> dict[str, dict[str, Any]]:
    manifests = kubernetes_manifests(sample(), image="conveyor:test", console=mode)
    return {m["kind"]: m for m in manifests if m["metadata"]["name"] == "conveyor-console"}


@pytest.mark.parametrize("mode", CONSOLE_MODES)
def test_the_kubernetes_console_scales_worker_deployments_only_when_it_operates(
    mode: ConsoleMode,
) -> None:
    found = _k8s_console(mode)
    assert set(found) == {"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service"}
    (container,) = found["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][:1] == ["console"]
    assert ("--read-only" in container["args"]) is (mode == "read-only")
    assert {"name": "CONVEYOR_SCALING_BACKEND", "value": "kubernetes"} in container["env"]
    patches = [r for r in found["Role"]["rules"] if "patch" in r["verbs"]]
    if mode == "read-only":
        assert patches == []
    else:
        (patch,) = patches
        assert patch["resources"] == ["deployments/scale"]
        assert patch["resourceNames"] == [f"conveyor-worker-{p}" for p in sample().pools]
    assert found["RoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "conveyor-console"}
    ]
    assert found["Service"]["spec"]["ports"][0]["targetPort"] == "http"


def test_the_cli_exports_the_console_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(REPO / "queues.yaml"))
    out = tmp_path / "t.json"
    result = CliRunner().invoke(
        app, ["infra", "export", "cloudformation", "--console", "read-only", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    template = json.loads(out.read_text())
    assert _actions(template) == READS
    result = CliRunner().invoke(app, ["infra", "export", "kubernetes", "--console", "operate"])
    assert result.exit_code == 0, result.output
    kinds = {(m["kind"], m["metadata"]["name"]) for m in yaml.safe_load_all(result.stdout) if m}
    assert ("Deployment", "conveyor-console") in kinds
    wrong = CliRunner().invoke(app, ["infra", "export", "cloudformation", "--console", "rw"])
    assert wrong.exit_code == 2
