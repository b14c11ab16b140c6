"""The kubernetes backend: the requests the official client makes, against a loopback API server.

The server below is a real HTTP server on 127.0.0.1 that answers the three calls
the backend makes (read a Deployment, list its pods, patch its scale) and records
every request, so the test sees exactly what a cluster would receive.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from infra.net import free_port
from tests import REPO

runner = CliRunner()
TOPOLOGY = REPO / "tests" / "fixtures" / "scaling.yaml"
DEPLOYMENT = "/apis/apps/v1/namespaces/jobs/deployments/sc-worker-main"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeCluster:
    """State of the one Deployment, and every request received."""

    url: str
    replicas: int = 1
    ready: int = 1
    exists: bool = True
    requests: list[Request] = field(default_factory=list)


def _deployment(cluster: FakeCluster) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sc-worker-main", "namespace": "jobs"},
        "spec": {
            "replicas": cluster.replicas,
            "selector": {"matchLabels": {"conveyor.io/pool": "main"}},
            "template": {"metadata": {}, "spec": {"containers": []}},
        },
        "status": {"replicas": cluster.replicas, "readyReplicas": cluster.ready},
    }


def _pods(cluster: FakeCluster) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": f"sc-worker-main-{i}", "namespace": "jobs"},
                "spec": {"nodeName": f"node-{i}", "containers": []},
                "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"},
            }
            for i in range(cluster.ready)
        ],
    }


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    state = FakeCluster(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            state.requests.append(
                Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
            )
            if not state.exists and parts.path.startswith(DEPLOYMENT):
                self._send(404, {"kind": "Status", "reason": "NotFound", "code": 404})
            elif (self.command, parts.path) == ("GET", DEPLOYMENT):
                self._send(200, _deployment(state))
            elif (self.command, parts.path) == ("GET", "/api/v1/namespaces/jobs/pods"):
                self._send(200, _pods(state))
            elif (self.command, parts.path) == ("PATCH", f"{DEPLOYMENT}/scale"):
                state.replicas = json.loads(raw)["spec"]["replicas"]
                self._send(200, {"kind": "Scale", "spec": {"replicas": state.replicas}})
            else:
                self._send(404, {"kind": "Status", "code": 404})

        do_GET = do_PATCH = _handle  # noqa: N815 - http.server's naming

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": server}}],
                "users": [{"name": "test", "user": {"token": "t0ken"}}],
                "contexts": [
                    {
                        "name": "test",
                        "context": {"cluster": "test", "user": "test", "namespace": "jobs"},
                    }
                ],
                "current-context": "test",
            }
        )
    )
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_SCALING_BACKEND", "kubernetes")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config of the machine
    for key in ("KUBERNETES_SERVICE_HOST", "CONVEYOR_K8S_NAMESPACE", "CONVEYOR_K8S_CONTEXT"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path


def test_scale_patches_the_deployment_scale(
    cluster: FakeCluster, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(env / "kubeconfig", cluster.url)))
    result = runner.invoke(app, ["workers", "scale", "main=3"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "main: 1 → 3"

    (patch,) = [r for r in cluster.requests if r.method == "PATCH"]
    assert patch.path == f"{DEPLOYMENT}/scale"
    assert patch.body == {"spec": {"replicas": 3}}
    assert patch.headers["authorization"] == "Bearer t0ken"
    assert "merge-patch+json" in patch.headers["content-type"]
    assert cluster.replicas == 3


def test_ls_reads_replicas_and_pods(
    cluster: FakeCluster, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(env / "kubeconfig", cluster.url)))
    cluster.replicas, cluster.ready = 3, 2
    result = runner.invoke(app, ["workers", "ls", "--json"])
    assert result.exit_code == 0, result.output
    (pool,) = json.loads(result.output)["pools"]
    assert (pool["desired"], pool["running"]) == (3, 2)
    assert [(n["id"], n["host"], n["state"]) for n in pool["nodes"]] == [
        ("sc-worker-main-0", "node-0", "running"),
        ("sc-worker-main-1", "node-1", "running"),
    ]
    (pods,) = [r for r in cluster.requests if r.path.endswith("/pods")]
    assert pods.query["labelSelector"] == [
        "conveyor.io/pool=main,app.kubernetes.io/instance=sc-test"
    ]


def test_a_missing_deployment_is_named(
    cluster: FakeCluster, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(env / "kubeconfig", cluster.url)))
    monkeypatch.setenv("CONVEYOR_K8S_NAMESPACE", "jobs")
    cluster.exists = False
    listed = runner.invoke(app, ["workers", "ls", "--json"])
    (pool,) = json.loads(listed.output)["pools"]
    assert pool["note"] == "no Deployment sc-worker-main in namespace jobs"
    scaled = runner.invoke(app, ["workers", "scale", "main=2"])
    assert scaled.exit_code == 1
    assert scaled.output.strip() == (
        "conveyor: scaling Deployment sc-worker-main in namespace jobs: 404 Not Found"
    )


def test_no_cluster_configured_is_one_clear_line(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(env / "missing-kubeconfig"))
    result = runner.invoke(app, ["workers", "scale", "main=2"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "conveyor: no Kubernetes cluster is configured: set KUBECONFIG (or write"
        " ~/.kube/config), choose a context with CONVEYOR_K8S_CONTEXT, or run inside a cluster"
    )


def test_an_unreachable_cluster_is_one_clear_line(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(env / "kubeconfig", closed)))
    result = runner.invoke(app, ["workers", "ls"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "conveyor: reading Deployment sc-worker-main in namespace jobs:"
        f" cannot reach the Kubernetes API at {closed} (MaxRetryError)"
    )
