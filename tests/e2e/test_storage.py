"""End to end: large payloads through S3 and the job ledger, with real API and worker processes.

`conveyor api` and `conveyor worker` run as separate processes against the real
moto server; the tests talk HTTP to the API and look at S3, SQS and the handler's
outbox (tests/storage_jobs.py). The topology (tests/fixtures/storage.yaml) has
two pools: ``main`` runs for the whole module; ``late`` is started by a test once
it has seen its jobs queued, ``cut`` by the test that cuts the ledger off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra import aws, provision
from infra.emulator import EmulatorProcess
from infra.net import free_port
from infra.topology import Topology, load_topology
from tests import REPO
from tests.support import http
from tests.support import outbox as handler_outbox
from tests.support.emulator import fresh_environment, pointed_at
from tests.support.polling import eventually
from tests.support.processes import Api, Child, Worker
from tests.support.queues import queue_url, visible_in_flight

pytestmark = [
    pytest.mark.e2e,
    # One running system for the module: its tests go to one pytest-xdist worker.
    pytest.mark.xdist_group("storage"),
]

TOPOLOGY = REPO / "tests" / "fixtures" / "storage.yaml"
#: Above SNS's 256 KiB: this payload can only travel through S3.
LARGE_BYTES = 300 * 1024
STOP_TIMEOUT_S = 30.0


@dataclass
class Processes:
    """Conveyor processes this module started (stopped in reverse)."""

    env: dict[str, str]
    log_dir: Path
    started: list[Child] = field(default_factory=list)

    def api(self, name: str, env: dict[str, str] | None = None) -> str:
        api = Api(env=env or self.env, log_dir=self.log_dir, name=name)
        self.started.append(api)
        api.wait_ready()
        return api.url

    def start_worker(self, pool: str, name: str, env: dict[str, str] | None = None) -> Worker:
        worker = Worker(pool, env=env or self.env, log_dir=self.log_dir, name=name)
        self.started.append(worker)
        return worker

    @contextlib.contextmanager
    def worker(self, pool: str, env: dict[str, str] | None = None) -> Iterator[Path]:
        worker = self.start_worker(pool, f"worker-{pool}-{len(self.started)}", env)
        try:
            yield worker.log
        finally:
            worker.stop(STOP_TIMEOUT_S)  # a worker drains

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop(STOP_TIMEOUT_S)


@dataclass
class Storage:
    """The running API (and the ``main`` worker) plus what the tests observe."""

    api_url: str
    topology: Topology
    outbox: Path
    processes: Processes

    def post(self, job_type: str, payload: dict[str, Any], url: str | None = None) -> str:
        response = httpx.post(f"{url or self.api_url}/v1/jobs/{job_type}", json=payload, timeout=30)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        assert response.json()["status_url"] == f"/v1/jobs/{job_id}"
        return job_id

    def status(self, job_id: str, url: str | None = None) -> httpx.Response:
        return http.get(f"{url or self.api_url}/v1/jobs/{job_id}")

    def record(self, job_id: str) -> dict[str, Any]:
        response = self.status(job_id)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        return handler_outbox.runs(self.outbox, job_id)


@pytest.fixture(scope="module")
def storage(
    emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Storage]:
    root = tmp_path_factory.mktemp("storage")
    outbox = root / "outbox"
    outbox.mkdir()
    with (
        pytest.MonkeyPatch.context() as patch,
        pointed_at(
            emulator.endpoint_url,
            fresh_environment(),
            patch,
            CONVEYOR_QUEUES_FILE=str(TOPOLOGY),
            CONVEYOR_TEST_OUTBOX=str(outbox),
            CONVEYOR_API_AUTH="none",  # contract C2: this test is not about auth
            PYTHONPATH=str(REPO),  # workers import tests.storage_jobs
        ) as aws_env,
    ):
        topology = load_topology(TOPOLOGY)
        provision.apply(topology)
        processes = Processes(aws_env.env, root)
        try:
            url = processes.api("api")
            processes.start_worker("main", "worker-main")
            yield Storage(url, topology, outbox, processes)
        finally:
            processes.stop_all()


def _states(record: dict[str, Any], queue: str) -> tuple[str, int]:
    status = record["queues"][queue]
    return status["state"], status["attempt"]


def test_a_large_payload_round_trips_through_s3(storage: Storage) -> None:
    blob = ("0123456789abcdef" * (LARGE_BYTES // 16 + 1))[:LARGE_BYTES]
    job_id = storage.post("blob.echo", {"label": "large", "blob": blob})

    # The payload is in the bucket, under the job's key: it could not travel through SNS.
    bucket = f"cs-{storage.topology.environment}-payloads-{aws.account_id()}-{aws.region_name()}"
    stored = aws.client("s3").get_object(Bucket=bucket, Key=f"blob.echo/{job_id}.json")
    assert json.loads(stored["Body"].read())["blob"] == blob

    [run] = eventually(lambda: storage.runs(job_id), what="the handler to run")
    assert run["outcome"] == "ok"
    assert run["size"] == LARGE_BYTES
    assert run["sha256"] == hashlib.sha256(blob.encode()).hexdigest()
    record = eventually(
        lambda: (r := storage.record(job_id))["state"] == "succeeded" and r,
        what="the job's status to be succeeded",
    )
    assert record["type"] == "blob.echo"
    assert _states(record, "work") == ("succeeded", 1)


def test_status_walks_queued_running_succeeded_and_retrying_dead_lettered(
    storage: Storage, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    walk = storage.post("blob.walk", {"label": "walk", "gate": str(gate)})
    failing = storage.post("blob.fail", {"label": "doomed"})
    # No worker consumes `later` yet: both are queued, with the producer's record.
    for job_id in (walk, failing):
        record = storage.record(job_id)
        assert (record["state"], _states(record, "later")) == ("queued", ("queued", 0))
        assert record["queued_at"] is not None
        assert len(record["trace_id"]) == 32

    with storage.processes.worker("late"):
        running = eventually(
            lambda: (r := storage.record(walk))["state"] == "running" and r,
            what="the gated job to be running",
        )
        assert _states(running, "later") == ("running", 1)
        assert running["queues"]["later"]["started_at"] is not None

        retrying = eventually(
            lambda: (r := storage.record(failing))["state"] == "retrying" and r,
            what="the failing job to be retrying",
        )
        status = retrying["queues"]["later"]
        assert (status["attempt"], status["error"]) == (1, "ValueError: cannot process doomed")
        assert status["next_attempt_at"] is not None
        assert status["next_attempt_at"] > status["updated_at"]

        gate.touch()
        done = eventually(
            lambda: (r := storage.record(walk))["state"] == "succeeded" and r,
            what="the gated job to succeed",
        )
        assert done["queues"]["later"]["finished_at"] is not None

        dead = eventually(
            lambda: (r := storage.record(failing))["state"] == "dead-lettered" and r,
            what="the failing job to be dead-lettered",
        )
        status = dead["queues"]["later"]
        assert (status["attempt"], status["reason"]) == (2, "attempts_exhausted")
        assert status["next_attempt_at"] is None
        assert [r["attempt"] for r in storage.runs(failing)] == [1, 2]


def test_unknown_job_id_is_404(storage: Storage) -> None:
    response = storage.status(str(uuid.uuid4()))
    assert response.status_code == 404
    assert "no status recorded" in response.json()["detail"]


def test_with_the_ledger_unreachable_jobs_still_run(storage: Storage) -> None:
    # DynamoDB alone points at a closed port: SNS, SQS and S3 still answer.
    cut = {
        **storage.processes.env,
        "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{free_port()}",  # nothing listens there,
    }
    cut_api = storage.processes.api("api-ledger-cut", env=cut)
    job_id = storage.post("blob.cut", {"label": "unrecorded"}, url=cut_api)  # still 202

    with storage.processes.worker("cut", env=cut) as worker_log:
        [run] = eventually(lambda: storage.runs(job_id), what="the handler to run")
        assert run["outcome"] == "ok"
        url = queue_url(storage.topology, "cut")
        eventually(
            lambda: visible_in_flight(url) == (0, 0),
            what="the job's message to be deleted",
        )
        eventually(
            lambda: '"ledger.record_failed"' in worker_log.read_text(),
            what="the worker to log the ledger failure",
        )

    unavailable = storage.status(job_id, url=cut_api)
    assert unavailable.status_code == 503
    assert unavailable.headers["Retry-After"] == "5"
    # The answer names no table (that stays in the API's log).
    assert "the job ledger cannot be read" in unavailable.json()["detail"]
    # Nothing reached the ledger: the reachable API knows nothing of the job.
    assert storage.status(job_id).status_code == 404
