"""Driver for Conveyor: the producer API's batch endpoint in, a ``conveyor worker`` node out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.procs import Proc, counted, spawn
from benchmarks.systems.common import RunContext
from conveyor.system import wait_for_http
from infra import aws
from infra.net import free_port
from infra.provision import apply
from infra.topology import load_topology

NAME = "conveyor"
TOPOLOGY = Path(__file__).resolve().parent.parent / "queues.yaml"
#: The batch endpoint's largest batch (contract C1).
API_BATCH = 500


def _env(run: RunContext, environment: str) -> dict[str, str]:
    return {
        **run.env,
        "CONVEYOR_QUEUES_FILE": str(TOPOLOGY),
        "CONVEYOR_ENVIRONMENT": environment,
        "CONVEYOR_API_AUTH": "none",  # contract C2: a benchmark on the emulator
        "CONVEYOR_LOG_FORMAT": "json",
    }


def setup(run: RunContext) -> dict[str, Any]:
    """Provision benchmarks/queues.yaml under a fresh environment (as ``conveyor infra apply``)."""
    environment = run.prefix.replace("-", "")
    aws.reset_clients()
    apply(load_topology(TOPOLOGY, environment=environment))
    return {"environment": environment, "api_port": free_port()}


def start(run: RunContext, config: dict[str, Any]) -> list[Proc]:
    """The producer API (auth off, per C2) and one worker node of the ``bench`` pool."""
    env = _env(run, config["environment"])
    port = str(config["api_port"])
    api = spawn(
        f"{NAME}-api",
        counted("api", "conveyor", "api", "--port", port),
        env,
        run.log_dir,
    )
    worker = spawn(
        f"{NAME}-worker",
        counted(
            "worker", "conveyor", "worker", "--pool", "bench", "--concurrency", str(run.concurrency)
        ),
        env,
        run.log_dir,
    )
    wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=api.popen)
    return [api, worker]


def producer_env(run: RunContext, config: dict[str, Any]) -> dict[str, str]:
    """What the producer process needs in its environment."""
    return {**_env(run, config["environment"]), "BENCH_API_PORT": str(config["api_port"])}


def enqueuer(config: dict[str, Any]) -> tuple[int, Callable[[list[dict[str, Any]]], None]]:
    """(jobs per call, enqueue function): POST /v1/jobs with up to 500 jobs."""
    client = httpx.Client(base_url=f"http://127.0.0.1:{config['api_port']}", timeout=60.0)

    def enqueue(bodies: list[dict[str, Any]]) -> None:
        response = client.post(
            "/v1/jobs", json={"jobs": [{"type": "bench.work", "data": b} for b in bodies]}
        )
        if response.status_code != 202:
            raise RuntimeError(f"POST /v1/jobs: {response.status_code} {response.text[:300]}")

    return API_BATCH, enqueue
