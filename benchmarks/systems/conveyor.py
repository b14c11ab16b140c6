"""Driver for Conveyor: the producer API's batch endpoint in, a ``conveyor worker`` node out.

benchmarks/queues.yaml is copied into the run's directory with the ``bench`` pool's
``worker_pool`` set to the run's (prefork, threads or asyncio); for asyncio, the job
type's handler becomes its ``async def`` twin (an asyncio pool runs only those).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from benchmarks.procs import Proc, counted, spawn
from benchmarks.systems.common import RunContext
from conveyor.system import wait_for_http
from infra import aws
from infra.net import free_port
from infra.provision import apply
from infra.topology import load_topology
from infra.topology.model import Pool

NAME = "conveyor"
TOPOLOGY = Path(__file__).resolve().parent.parent / "queues.yaml"
#: The batch endpoint's largest batch (contract C1).
API_BATCH = 500
POOL = "bench"
ASYNC_HANDLER = "benchmarks.jobs:conveyor_handler_async"


def supports(worker_pool: str) -> bool:
    """Whether this revision of Conveyor has the execution pool ``worker_pool``."""
    try:
        Pool.model_validate({"queues": ["work"], "worker_pool": worker_pool})
    except ValidationError:
        return False
    return True


def topology_for(worker_pool: str) -> dict[str, Any]:
    """benchmarks/queues.yaml with the ``bench`` pool running on ``worker_pool``."""
    doc: dict[str, Any] = yaml.safe_load(TOPOLOGY.read_text())
    doc["pools"][POOL]["worker_pool"] = worker_pool
    if worker_pool == "asyncio":
        for job_type in doc["job_types"].values():
            job_type["handler"] = ASYNC_HANDLER
    return doc


def _env(run: RunContext, config: dict[str, Any]) -> dict[str, str]:
    return {
        **run.env,
        "CONVEYOR_QUEUES_FILE": config["queues_file"],
        "CONVEYOR_ENVIRONMENT": config["environment"],
        "CONVEYOR_API_AUTH": "none",  # contract C2: a benchmark on the emulator
        "CONVEYOR_LOG_FORMAT": "json",
    }


def setup(run: RunContext) -> dict[str, Any]:
    """Provision the run's queues.yaml under a fresh environment (as ``conveyor infra apply``)."""
    environment = run.prefix.replace("-", "")
    path = run.log_dir.parent / "queues.yaml"
    path.write_text(yaml.safe_dump(topology_for(run.worker_pool), sort_keys=False))
    aws.reset_clients()
    apply(load_topology(path, environment=environment))
    return {"environment": environment, "api_port": free_port(), "queues_file": str(path)}


def start(run: RunContext, config: dict[str, Any]) -> list[Proc]:
    """The producer API (auth off, per C2) and one worker node of the ``bench`` pool."""
    env = _env(run, config)
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
            "worker", "conveyor", "worker", "--pool", POOL, "--concurrency", str(run.concurrency)
        ),
        env,
        run.log_dir,
    )
    wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=api.popen)
    return [api, worker]


def producer_env(run: RunContext, config: dict[str, Any]) -> dict[str, str]:
    """What the producer process needs in its environment."""
    return {**_env(run, config), "BENCH_API_PORT": str(config["api_port"])}


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
