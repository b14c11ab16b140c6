"""Conveyor's processes as tests start them: workers and APIs, ready when they say so.

Each child is ``python -m conveyor …`` in its own process group (so a SIGKILL of
the group reaches a worker's pool processes too), its output in ``<log_dir>/<name>.log``.
Readiness is asked of the process itself, over HTTP, never read from its log:

* a worker is started with ``--health-port`` and is ready once its ``/healthz``
  answers 200, its pool processes are forked, and its ``/metrics`` counts a
  ReceiveMessage — its consumer polls. (``/metrics`` is asked only once the pool
  is forked: a scrape imports prometheus_client in the node, and a fork in the
  middle of that import leaves the pool process stuck on the import's lock.)
* an API is ready once its ``/healthz`` answers 200 (the topology is reachable).

A child that exits while a test waits for it fails the wait with its log's tail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from infra.net import free_port
from infra.topology import load_topology
from tests import REPO
from tests.support import http
from tests.support.polling import eventually

#: How a Conveyor command is run (``python -c …`` for a test's own entry point).
CONVEYOR: tuple[str, ...] = (sys.executable, "-m", "conveyor")
#: Long enough for a loaded CI machine to start a worker; a passing test never waits it out.
READY_TIMEOUT_S = 90.0
#: How long a SIGTERM'd child may take to drain before it is killed.
STOP_TIMEOUT_S = 60.0
#: The node gauge that counts its ReceiveMessage calls (workers.node).
RECEIVES = "conveyor_sqs_receive_message_requests"


class Child:
    """A child process in its own process group, its output in ``<log_dir>/<name>.log``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        log_dir: Path,
        cwd: Path = REPO,
    ) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                list(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # its own group: killpg reaches its pool processes too
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        """Everything the child wrote so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def check_alive(self) -> None:
        """Fail with the log's tail if the child has exited."""
        if not self.alive:
            raise AssertionError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.text()[-3000:]}"
            )

    def answers(self, url: str) -> httpx.Response | None:
        """GET ``url`` (a child's endpoint); None while nothing answers there."""
        self.check_alive()
        try:
            return http.get(url, timeout_s=2.0)
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll :meth:`ready` until it holds; fail at the deadline or when the child exits."""
        eventually(self.ready, what=f"{self.name} to be ready", timeout_s=timeout_s)

    def ready(self) -> bool:
        """Whether the child serves (subclasses ask it over HTTP)."""
        self.check_alive()
        return True

    def terminate(self) -> None:
        """SIGTERM the main process: a worker drains, an API shuts down (a scale-in's signal)."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        """Its exit code, waiting up to ``timeout_s`` (TimeoutExpired after)."""
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait up to ``timeout_s`` for it to exit, else SIGKILL its group; the code."""
        self.terminate()
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL the whole process group: the child and its pool processes, no cleanup."""
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        """Teardown: whatever is left of the group is killed."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is gone already
        except PermissionError:
            pass  # a recycled pgid that is not ours: nothing of ours is left in it
        self.proc.wait()


class Worker(Child):
    """``conveyor worker --pool POOL --health-port PORT …``."""

    def __init__(
        self,
        pool: str,
        *,
        env: dict[str, str],
        log_dir: Path,
        name: str | None = None,
        args: Sequence[str] = (),
        command: Sequence[str] = CONVEYOR,
    ) -> None:
        self.pool = pool
        spec = load_topology(env.get("CONVEYOR_QUEUES_FILE", REPO / "queues.yaml")).pools[pool]
        #: How many pool processes the node forks before it consumes.
        self.pool_processes = spec.concurrency if spec.worker_pool == "prefork" else 0
        self.health_port = free_port()
        argv = [*command, "worker", "--pool", pool, "--health-port", str(self.health_port), *args]
        super().__init__(name or f"worker-{pool}", argv, env=env, log_dir=log_dir)

    @property
    def health_url(self) -> str:
        """``http://127.0.0.1:PORT``: ``/healthz`` and ``/metrics`` are under it."""
        return f"http://127.0.0.1:{self.health_port}"

    def children(self) -> int:
        """How many processes the node's main process has forked and not reaped."""
        count = 0
        for task in Path(f"/proc/{self.pid}/task").glob("*/children"):
            try:
                count += len(task.read_text().split())
            except OSError:
                continue  # the thread ended while we looked
        return count

    def ready(self) -> bool:
        """Healthy, its pool forked, and its consumer has sent a ReceiveMessage (it consumes)."""
        healthz = self.answers(f"{self.health_url}/healthz")
        if healthz is None or healthz.status_code != 200:
            return False
        if self.children() < self.pool_processes:
            return False
        page = self.answers(f"{self.health_url}/metrics")
        return page is not None and page.status_code == 200 and metric(page.text, RECEIVES) >= 1


class Api(Child):
    """``conveyor api --port PORT …`` on a free loopback port."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        log_dir: Path,
        name: str = "api",
        args: Sequence[str] = (),
        command: Sequence[str] = CONVEYOR,
    ) -> None:
        self.port = free_port()
        argv = [*command, "api", "--port", str(self.port), *args]
        super().__init__(name, argv, env=env, log_dir=log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        healthz = self.answers(f"{self.url}/healthz")
        return healthz is not None and healthz.status_code == 200


def start_worker(
    pool: str,
    *,
    env: dict[str, str],
    log_dir: Path,
    name: str | None = None,
    args: Sequence[str] = (),
    wait: bool = True,
) -> Worker:
    """Start a worker node of ``pool``; by default wait until it consumes."""
    worker = Worker(pool, env=env, log_dir=log_dir, name=name, args=args)
    if wait:
        worker.wait_ready()
    return worker


def start_api(
    *,
    env: dict[str, str],
    log_dir: Path,
    name: str = "api",
    args: Sequence[str] = (),
    command: Sequence[str] = CONVEYOR,
    wait: bool = True,
) -> Api:
    """Start an API on a free port; by default wait until its ``/healthz`` answers 200."""
    api = Api(env=env, log_dir=log_dir, name=name, args=args, command=command)
    if wait:
        api.wait_ready()
    return api


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        sample, _, rest = key.partition("{")
        found = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sample == name and found == wanted:
            return float(value)
    return 0.0


class Scheduler(Child):
    """``conveyor scheduler --health-port PORT``: ready once its ``/healthz`` answers 200."""

    def __init__(self, *, env: dict[str, str], log_dir: Path, name: str = "scheduler") -> None:
        self.health_port = free_port()
        argv = [*CONVEYOR, "scheduler", "--health-port", str(self.health_port)]
        super().__init__(name, argv, env=env, log_dir=log_dir)

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def ready(self) -> bool:
        healthz = self.answers(f"{self.health_url}/healthz")
        return healthz is not None and healthz.status_code == 200

    def published(self) -> float:
        """How many delayed jobs it has published (its /metrics)."""
        page = self.answers(f"{self.health_url}/metrics")
        return metric(page.text, "conveyor_scheduler_published_total") if page else 0.0


def start_scheduler(*, env: dict[str, str], log_dir: Path, name: str = "scheduler") -> Scheduler:
    """Start a scheduler and wait until its ``/healthz`` answers 200."""
    scheduler = Scheduler(env=env, log_dir=log_dir, name=name)
    scheduler.wait_ready()
    return scheduler
