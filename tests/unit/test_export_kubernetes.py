"""The Kubernetes export: manifests that parse, carry queues.yaml's pools, and match KEDA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conveyor.cli import app
from infra.export import kubernetes_manifests
from infra.export.names import DEFAULT_BACKLOG_TARGET
from infra.topology import Topology, load_topology
from tests import REPO

#: The fields of KEDA's ScaledObject (keda.sh/v1alpha1) and its aws-sqs-queue trigger
#: that the export sets, by name and type (https://keda.sh/docs/latest/scalers/aws-sqs/).
SCALED_OBJECT_FIXTURE = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: str
spec:
  scaleTargetRef:
    name: str
  minReplicaCount: int
  maxReplicaCount: int
  pollingInterval: int
  cooldownPeriod: int
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: int
  triggers:
    - type: aws-sqs-queue
      metadata:
        queueURL: str
        queueLength: str
        awsRegion: str
      authenticationRef:
        name: str
"""
TRIGGER_AUTH_FIXTURE = """
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: str
spec:
  podIdentity:
    provider: aws
"""
TYPES = {"str": str, "int": int}


def _matches(found: Any, expected: Any, where: str = "") -> None:
    """``found`` has exactly the fields of ``expected``; leaves are types or literal values."""
    if isinstance(expected, dict):
        assert isinstance(found, dict), where
        assert set(found) - {"labels"} == set(expected), where
        for key, value in expected.items():
            _matches(found[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(found, list), where
        assert found, where
        for i, item in enumerate(found):
            _matches(item, expected[0], f"{where}[{i}]")
    elif expected in TYPES:
        assert isinstance(found, TYPES[expected]), where
    else:
        assert found == expected, where


@pytest.fixture
def topology() -> Topology:
    return load_topology(REPO / "queues.yaml", environment="dev")


def _by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def test_manifests_round_trip_through_yaml(topology: Topology) -> None:
    manifests = kubernetes_manifests(topology)
    text = yaml.safe_dump_all(manifests, sort_keys=False)
    assert list(yaml.safe_load_all(text)) == manifests
    names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(names) == len(set(names))


def test_scaled_objects_match_keda_and_carry_the_pool_targets(topology: Topology) -> None:
    manifests = kubernetes_manifests(topology, region="eu-west-1", account="111122223333")
    scaled = _by_kind(manifests, "ScaledObject")
    deployments = _by_kind(manifests, "Deployment")
    assert len(scaled) == len(topology.pools)
    expected = yaml.safe_load(SCALED_OBJECT_FIXTURE)
    for pool, spec in topology.pools.items():
        obj = scaled[f"conveyor-worker-{pool}"]
        _matches(obj, expected)
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments
        assert obj["spec"]["minReplicaCount"] == spec.replicas.min
        assert obj["spec"]["maxReplicaCount"] == spec.replicas.max
        urls = [t["metadata"]["queueURL"] for t in obj["spec"]["triggers"]]
        assert urls == [
            f"https://sqs.eu-west-1.amazonaws.com/111122223333/{topology.queue_name(q)}"
            for q in spec.queues
        ]
        for trigger in obj["spec"]["triggers"]:
            assert trigger["metadata"]["queueLength"] == str(DEFAULT_BACKLOG_TARGET)
            assert trigger["metadata"]["awsRegion"] == "eu-west-1"
            assert trigger["authenticationRef"]["name"] in _by_kind(
                manifests, "TriggerAuthentication"
            )
    (auth,) = _by_kind(manifests, "TriggerAuthentication").values()
    _matches(auth, yaml.safe_load(TRIGGER_AUTH_FIXTURE))


def test_worker_and_api_deployments(topology: Topology) -> None:
    manifests = kubernetes_manifests(topology, image="registry.example/conveyor:1.0")
    deployments = _by_kind(manifests, "Deployment")
    config_maps = _by_kind(manifests, "ConfigMap")
    for pool, spec in topology.pools.items():
        deployment = deployments[f"conveyor-worker-{pool}"]
        assert deployment["spec"]["replicas"] == spec.replicas.min
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "registry.example/conveyor:1.0"
        args = container["args"]
        assert args[:3] == ["worker", "--pool", pool]
        port = int(args[args.index("--health-port") + 1])
        assert container["ports"] == [{"name": "health", "containerPort": port}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["envFrom"][0]["configMapRef"]["name"] in config_maps
        assert container["securityContext"]["runAsNonRoot"] is True
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert deployment["spec"]["template"]["metadata"]["labels"] == labels
    api = deployments["conveyor-api"]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "api"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Outside the emulator the API refuses to start without keys: they must be wired in,
    # from a Secret the pod cannot start without.
    (keys,) = [e for e in container["env"] if e["name"] == "CONVEYOR_API_KEYS"]
    ref = keys["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("conveyor-api-keys", "keys.yaml")
    assert "optional" not in ref
    service = _by_kind(manifests, "Service")["conveyor-api"]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert config_maps["conveyor"]["data"]["CONVEYOR_ENVIRONMENT"] == "dev"


def test_cli_writes_one_file_per_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(REPO / "queues.yaml"))
    monkeypatch.setenv("CONVEYOR_ENVIRONMENT", "dev")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    out = tmp_path / "k8s"
    args = ["infra", "export", "kubernetes", "-o", str(out), "--account", "111122223333"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.yaml"))
    loaded = [yaml.safe_load(f.read_text()) for f in files]
    topology = load_topology(REPO / "queues.yaml", environment="dev")
    assert loaded == kubernetes_manifests(topology, region="us-east-1", account="111122223333")
    printed = CliRunner().invoke(app, [*args[:3], "--account", "111122223333"])
    assert list(yaml.safe_load_all(printed.stdout)) == loaded
