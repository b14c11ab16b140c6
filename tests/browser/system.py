"""The system the browser tests (and docs/console_screenshots.py) drive: real processes on a
real moto server, and the web console in front of them.

:func:`running_system` applies tests/fixtures/console.yaml under a fresh environment
name with ``conveyor infra apply``, then starts, each as its own process (see
:mod:`tests.support.processes`): the producer API, the local supervisor (``conveyor
workers up``: the pool's nodes, scaled through its state directory), and ``conveyor
console`` on a free loopback port. It waits until each serves (the API's and the
console's ``/healthz``, the pool's node answering its ``/metrics``), and stops them in
reverse order. Nothing here touches this process's environment or boto3 clients: what
a test checks behind the browser's back, it asks over HTTP or with its own client.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from infra.net import free_port
from infra.topology import Topology, load_topology
from ops.scaling.backends.local import LocalBackend
from ops.scaling.model import PoolState
from tests import REPO
from tests.dlq_jobs import DEPENDENCY_DOWN
from tests.support.emulator import aws_environ, fresh_environment, sqs_client
from tests.support.polling import eventually
from tests.support.processes import CONVEYOR, Api, Child, start_api
from tests.support.queues import dead_letter

TOPOLOGY = REPO / "tests" / "fixtures" / "console.yaml"
#: The pool the console scales.
POOL = "main"
#: The queue whose DLQ the tests fill.
QUEUE = "work"
#: Long enough for a loaded 2-core machine to start a node; a passing run never waits it out.
START_TIMEOUT_S = 120.0


class Console(Child):
    """``conveyor console --port PORT …`` on a free loopback port."""

    def __init__(
        self, *, env: dict[str, str], log_dir: Path, name: str = "console", args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        argv = [*CONVEYOR, "console", "--host", "127.0.0.1", "--port", str(self.port), *args]
        super().__init__(name, argv, env=env, log_dir=log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        healthz = self.answers(f"{self.url}/healthz")
        return healthz is not None and healthz.status_code == 200


@dataclass
class System:
    """Handles on a running system; what the browser does is checked through these."""

    topology: Topology
    env: dict[str, str]
    endpoint_url: str
    log_dir: Path
    outbox: Path
    console: Console
    api: Api | None = None
    supervisor: Child | None = None
    children: list[Child] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The console's base URL."""
        return self.console.url

    @property
    def state_dir(self) -> Path:
        """The supervisor's state directory of this project and environment."""
        base = Path(self.env["CONVEYOR_STATE_DIR"])
        return base / f"{self.topology.project}-{self.topology.environment}"

    def dependency(self, *, down: bool) -> None:
        """Take the handlers' dependency down (``report.render`` fails) or bring it back."""
        flag = self.outbox / DEPENDENCY_DOWN
        if down:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def enqueue(self, job_type: str, label: str, *, key: str | None = None) -> str:
        """Submit a job through the producer API (with ``key`` when auth is on); its id."""
        assert self.api is not None, "this system runs no API"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = httpx.post(
            f"{self.api.url}/v1/jobs/{job_type}",
            json={"label": label},
            headers=headers,
            timeout=10,
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def job(self, job_id: str, *, key: str | None = None) -> dict[str, Any] | None:
        """The job's ledger record, as the API serves it (None while it has none)."""
        assert self.api is not None, "this system runs no API"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = httpx.get(f"{self.api.url}/v1/jobs/{job_id}", headers=headers, timeout=5.0)
        if response.status_code != 200:
            return None
        record: dict[str, Any] = response.json()
        return record

    def job_in_state(self, job_id: str, state: str) -> dict[str, Any] | None:
        """The job's record once its overall state is ``state``."""
        record = self.job(job_id)
        return record if record is not None and record.get("state") == state else None

    def seed_dead_letter(self, label: str, queue: str = QUEUE) -> str:
        """Put a ``report.render`` job in ``queue``'s DLQ as a worker would (permanent
        failure); its id."""
        sqs = sqs_client(self.endpoint_url)
        url = sqs.get_queue_url(QueueName=self.topology.dlq_name(queue))["QueueUrl"]
        envelope = dead_letter(
            sqs,
            url,
            "report.render",
            label,
            reason="permanent_error",
            error_type="PermanentError",
            error_message=f"template store unreachable while rendering {label}",
            attempts=1,
        )
        return envelope.id

    def dlq_depth(self, queue: str = QUEUE) -> int:
        """Visible plus in-flight messages of ``queue``'s DLQ, read from SQS itself."""
        sqs = sqs_client(self.endpoint_url)
        url = sqs.get_queue_url(QueueName=self.topology.dlq_name(queue))["QueueUrl"]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]  # type: ignore[arg-type]
        return sum(int(attributes[name]) for name in names)

    def pool(self, name: str = POOL) -> PoolState:
        """The pool's desired and running nodes, from the supervisor's state."""
        return LocalBackend(self.topology, state_dir=self.state_dir).pools([name])[name]

    def nodes_ready(self, count: int, name: str = POOL) -> PoolState | None:
        """The pool once ``count`` nodes run and every one answers its ``/metrics``."""
        state = self.pool(name)
        ready = (
            state.desired == count
            and state.running == count
            and len(state.nodes) == count
            and all(n.jobs_succeeded is not None for n in state.nodes)
        )
        return state if ready else None


def system_environment(endpoint_url: str, root: Path, **extra: str) -> dict[str, str]:
    """The environment of every process of one system (a fresh environment name)."""
    outbox = root / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        **aws_environ(endpoint_url, fresh_environment("cb")),
        "CONVEYOR_QUEUES_FILE": str(TOPOLOGY),
        "CONVEYOR_TEST_OUTBOX": str(outbox),
        "CONVEYOR_STATE_DIR": str(root / "state"),
        "PYTHONPATH": str(REPO),  # worker processes import tests.console_jobs
        "CONVEYOR_WORKER_SHUTDOWN_GRACE_S": "10",
        **extra,
    }


@contextmanager
def running_system(
    endpoint_url: str,
    root: Path,
    *,
    workers: bool = True,
    console_args: Sequence[str] = (),
    **extra_env: str,
) -> Iterator[System]:
    """Apply the topology and start the API, (``workers``) the supervisor and its pool,
    and the console; stop them all at the end. ``extra_env`` is every process's."""
    env = system_environment(endpoint_url, root, **extra_env)
    topology = load_topology(TOPOLOGY, environment=env["CONVEYOR_ENVIRONMENT"])
    applied = subprocess.run(
        [*CONVEYOR, "infra", "apply"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    log_dir = root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        api: Api | None = None
        supervisor: Child | None = None
        if workers:
            api = start_api(env=env, log_dir=log_dir, wait=False)
            stack.callback(api.close)
            stack.callback(api.stop, 30.0)
            supervisor = Child("supervisor", [*CONVEYOR, "workers", "up"], env=env, log_dir=log_dir)
            stack.callback(supervisor.close)
            stack.callback(supervisor.stop, 60.0)  # SIGTERM: it drains its nodes
        console = Console(env=env, log_dir=log_dir, args=console_args)
        stack.callback(console.close)
        stack.callback(console.stop, 30.0)
        system = System(
            topology,
            env,
            endpoint_url,
            log_dir,
            Path(env["CONVEYOR_TEST_OUTBOX"]),
            console,
            api=api,
            supervisor=supervisor,
        )
        console.wait_ready(START_TIMEOUT_S)
        if api is not None and supervisor is not None:
            api.wait_ready(START_TIMEOUT_S)
            eventually(
                lambda: supervisor.check_alive() or system.nodes_ready(1),
                what="the pool's first node (replicas.min)",
                timeout_s=START_TIMEOUT_S,
            )
        yield system
