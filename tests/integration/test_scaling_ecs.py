"""The ecs backend against moto's ECS over HTTP (the embedded emulator serves ECS too).

moto keeps a service's desiredCount (and, after an update, reports runningCount
equal to it) but starts no tasks, which is enough to see what Conveyor asks of ECS.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from infra import aws
from infra.envelope import encode, make_envelope
from infra.provision import apply
from infra.topology import Topology, load_topology
from tests import REPO
from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration

runner = CliRunner()
TOPOLOGY = REPO / "tests" / "fixtures" / "scaling.yaml"


@pytest.fixture
def topology(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> Topology:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_SCALING_BACKEND", "ecs")
    monkeypatch.delenv("CONVEYOR_ECS_CLUSTER", raising=False)
    return load_topology(TOPOLOGY, environment=aws_env.environment)


def _deploy(topology: Topology, desired: int) -> tuple[str, str]:
    """What the CloudFormation export would create: a cluster and the pool's service."""
    ecs = aws.client("ecs")
    cluster = topology.resource_name("workers")
    service = topology.resource_name("main")
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family=service,
        containerDefinitions=[
            {
                "name": "worker",
                "image": "conveyor:test",
                "memory": 512,
                "command": ["worker", "--pool", "main"],
            }
        ],
    )
    ecs.create_service(
        cluster=cluster, serviceName=service, taskDefinition=service, desiredCount=desired
    )
    return cluster, service


def _desired_count(cluster: str, service: str) -> int:
    (found,) = aws.client("ecs").describe_services(cluster=cluster, services=[service])["services"]
    return int(found["desiredCount"])


def test_scale_sets_the_service_desired_count(topology: Topology) -> None:
    cluster, service = _deploy(topology, desired=1)
    result = runner.invoke(app, ["workers", "scale", "main=3"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "main: 1 → 3"
    assert _desired_count(cluster, service) == 3

    listed = runner.invoke(app, ["workers", "ls", "--json"])
    assert listed.exit_code == 0, listed.output
    document = json.loads(listed.output)
    assert document["backend"] == "ecs"
    (pool,) = document["pools"]
    assert (pool["pool"], pool["desired"], pool["note"]) == ("main", 3, None)
    assert pool["nodes"] == []  # moto runs no tasks

    assert runner.invoke(app, ["workers", "scale", "main=4"]).exit_code == 2  # max is 3
    assert _desired_count(cluster, service) == 3


def test_the_autoscaler_moves_the_desired_count(topology: Topology) -> None:
    cluster, service = _deploy(topology, desired=1)
    apply(topology)
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=topology.queue_name("work"))["QueueUrl"]
    for start in range(0, 50, 10):  # 50 messages / target 20 → 3 nodes
        entries = [
            {"Id": str(i), "MessageBody": encode(make_envelope("test.sleep", {"seconds": 0}))}
            for i in range(start, start + 10)
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]

    dry = runner.invoke(app, ["workers", "autoscale", "--once", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "(dry run) main: scale-out 1 → 3  backlog 50" in dry.output
    assert _desired_count(cluster, service) == 1  # nothing applied

    applied = runner.invoke(app, ["workers", "autoscale", "--once"])
    assert applied.exit_code == 0, applied.output
    assert "main: scale-out 1 → 3" in applied.output
    assert _desired_count(cluster, service) == 3


def test_a_missing_service_is_named(topology: Topology) -> None:
    aws.client("ecs").create_cluster(clusterName=topology.resource_name("workers"))
    result = runner.invoke(app, ["workers", "scale", "main=2"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"conveyor: no ECS service {topology.resource_name('main')} in cluster"
        f" {topology.resource_name('workers')} (deploy the CloudFormation export:"
        " conveyor infra export cloudformation; or name the cluster with CONVEYOR_ECS_CLUSTER)"
    )
