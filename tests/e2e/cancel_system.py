"""The running system of the cancellation tests: a keyed API and workers on the emulator.

Shared by tests/e2e/test_cancel.py and tests/e2e/test_cancel_delayed.py. The topology
is tests/fixtures/cancel.yaml; handlers are tests/storage_jobs.py (one outbox line per
run, and a gate file that holds a job running until the test creates it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra import provision
from infra.emulator import EmulatorProcess
from infra.topology import Topology, load_topology
from producers.auth import hash_key
from producers.client import NO_RETRY, Client
from tests import REPO
from tests.support import outbox as handler_outbox
from tests.support.emulator import fresh_environment, pointed_at
from tests.support.processes import Api, Child, Worker

TOPOLOGY = REPO / "tests" / "fixtures" / "cancel.yaml"
ALICE = "cvy_alice-key-for-cancel-e2e-0123456789abcdef"
BOB = "cvy_bob-key-for-cancel-e2e-0123456789abcdef"
STOP_TIMEOUT_S = 30.0


@dataclass
class CancelSystem:
    """The API (keys: alice, bob), the ``busy`` worker, and what the tests observe."""

    env: dict[str, str]
    topology: Topology
    outbox: Path
    log_dir: Path
    api: Api
    started: list[Child] = field(default_factory=list)

    def client(self, key: str = ALICE) -> Client:
        """A client of the API with ``key``; it does not retry (tests see every answer)."""
        return Client(self.api.url, key, retry=NO_RETRY, timeout_s=30)

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        """What the handler recorded for ``job_id`` (one line per run)."""
        return handler_outbox.runs(self.outbox, job_id)

    def worker(self, pool: str) -> Worker:
        """Start a worker node of ``pool`` and wait until it consumes."""
        worker = Worker(pool, env=self.env, log_dir=self.log_dir, name=f"worker-{pool}")
        self.started.append(worker)
        worker.wait_ready()
        return worker

    def child(self, name: str, argv: list[str]) -> Child:
        """Start another Conveyor process (stopped with the system)."""
        child = Child(name, argv, env=self.env, log_dir=self.log_dir)
        self.started.append(child)
        return child

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop(STOP_TIMEOUT_S)
        self.api.stop(STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def system(
    emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CancelSystem]:
    root = tmp_path_factory.mktemp("cancel")
    outbox = root / "outbox"
    outbox.mkdir()
    keys = root / "keys.yaml"
    keys.write_text(
        f"keys:\n  - {{name: alice, sha256: {hash_key(ALICE)}}}\n"
        f"  - {{name: bob, sha256: {hash_key(BOB)}}}\n",
        encoding="utf-8",
    )
    with (
        pytest.MonkeyPatch.context() as patch,
        pointed_at(
            emulator.endpoint_url,
            fresh_environment(),
            patch,
            CONVEYOR_QUEUES_FILE=str(TOPOLOGY),
            CONVEYOR_TEST_OUTBOX=str(outbox),
            CONVEYOR_API_AUTH="keys",
            CONVEYOR_API_KEYS_FILE=str(keys),
            PYTHONPATH=str(REPO),  # workers import tests.storage_jobs
        ) as aws_env,
    ):
        topology = load_topology(TOPOLOGY)
        provision.apply(topology)
        api = Api(env=aws_env.env, log_dir=root)
        system = CancelSystem(aws_env.env, topology, outbox, root, api)
        try:
            api.wait_ready()
            yield system
        finally:
            system.stop_all()
