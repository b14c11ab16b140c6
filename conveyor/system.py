"""The whole system on one machine: emulator (when no AWS endpoint is set), topology, API,
a scheduler (delayed jobs), workers, and (when a port is given) the console.

Composition only: it starts the processes the packages provide and stops them in
the right order. Each part runs as its own process, as it would in production.
Worker nodes are run by the local supervisor (:mod:`ops.scaling.supervisor`)
in a thread of this process: each pool gets its desired replicas (``replicas.min``
until ``conveyor workers scale`` says otherwise), and a node that crashes is
restarted with backoff. ``autoscale=True`` also runs the backlog autoscaler.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from infra import aws
from infra.emulator import EmulatorProcess
from infra.errors import ConveyorError
from infra.logs import get_logger
from infra.net import free_port
from infra.provision import apply
from infra.settings import child_environment, load_settings, set_environment
from infra.topology import Topology
from ops.scaling.autoscaler import Autoscaler
from ops.scaling.backends.local import LocalBackend
from ops.scaling.store import state_dir_for
from ops.scaling.supervisor import Supervisor

log = get_logger("conveyor.system")

#: How long a stopping worker may take to finish the jobs in hand.
STOP_GRACE_S = 30.0


def wait_for_http(
    url: str, *, timeout_s: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    # One client for every poll: a new one per call (httpx.get) costs tens of ms of CPU,
    # which the processes starting beside it need.
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{url}: the process exited with code {proc.returncode}")
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling interval, bounded by the deadline
    raise TimeoutError(f"{url} did not answer within {timeout_s:g} s")


class StartError(ConveyorError):
    """A part of the local system did not start; ``str()`` is one line saying which."""


def _last_line(exc: BaseException) -> str:
    """The first line of ``exc`` and the last line of the output it carries (the cause)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(exc).__name__
    return f"{lines[0].rstrip(':; ')} ({lines[-1].strip()})"


@dataclass
class Child:
    """A started Conveyor process."""

    name: str
    proc: subprocess.Popen[bytes]
    log_file: IO[bytes] | None = None


@dataclass
class LocalSystem:
    """Handles on a running local system."""

    topology: Topology
    api_url: str
    env: dict[str, str]
    #: The embedded emulator's endpoint, when this system started one.
    emulator_url: str | None = None
    #: The scheduler's /healthz (and /metrics beside it).
    scheduler_health_url: str | None = None
    #: The web console (``conveyor console``), when this system started one.
    console_url: str | None = None
    children: list[Child] = field(default_factory=list)
    log_dir: Path | None = None
    #: Where desired replicas and the supervisor's status live (``workers scale`` uses it).
    state_dir: Path | None = None
    #: Threads that must keep running (the supervisor, the autoscaler), with their errors.
    threads: list[_Service] = field(default_factory=list)

    def dead_children(self) -> list[Child]:
        """Processes that exited although nobody asked them to."""
        return [c for c in self.children if c.proc.poll() is not None]

    def failures(self) -> list[str]:
        """Why the system is no longer whole (empty while it is): exited processes, dead threads."""
        found = [f"{c.name} exited with code {c.proc.returncode}" for c in self.dead_children()]
        found += [
            f"{t.name} stopped: {t.error or 'unexpectedly'}" for t in self.threads if t.dead()
        ]
        return found


class _Service:
    """A long-running loop (supervisor, autoscaler) in a thread, stopped through an event."""

    def __init__(self, name: str, target: Callable[[threading.Event], None]) -> None:
        self.name = name
        self.stop = threading.Event()
        self.error: str | None = None
        self._target = target
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._target(self.stop)
        except Exception as exc:  # reported by failures(); the system then stops
            log.exception("thread.failed", thread=self.name)
            self.error = f"{type(exc).__name__}: {exc}"

    def start(self) -> None:
        self._thread.start()

    def dead(self) -> bool:
        return not self._thread.is_alive() and not self.stop.is_set()

    def close(self, timeout_s: float) -> None:
        self.stop.set()
        self._thread.join(timeout=timeout_s)


def _conveyor(*args: str) -> list[str]:
    return [sys.executable, "-m", "conveyor", *args]


def _spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path | None) -> Child:
    log_file = open(log_dir / f"{name}.log", "wb") if log_dir else None  # noqa: SIM115 - closed in stop
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file or None,
        stderr=log_file or None,
        start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
    )
    log.info("process.started", process=name, pid=proc.pid)
    return Child(name, proc, log_file)


def _stop(children: list[Child], grace_s: float) -> None:
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)  # warm shutdown for workers
    deadline = time.monotonic() + grace_s
    for child in children:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            log.warning("process.killed", process=child.name, after_s=grace_s)
            child.proc.kill()
            child.proc.wait()
        if child.log_file:
            child.log_file.close()
        code = child.proc.returncode
        if code < 0:
            # uvicorn re-raises the SIGTERM we sent once it has shut down cleanly.
            log.info("process.stopped", process=child.name, signal=signal.Signals(-code).name)
        else:
            log.info("process.stopped", process=child.name, exit_code=code)


def _start_emulator(port: int, log_dir: Path | None, env: dict[str, str]) -> EmulatorProcess:
    """Start the embedded emulator and point ``env`` and this process at it."""
    emulator = EmulatorProcess(port, log_path=log_dir / "emulator.log" if log_dir else None)
    try:
        emulator.start()
    except (RuntimeError, TimeoutError) as exc:  # start() stopped what it started
        raise StartError(f"the embedded emulator did not start: {_last_line(exc)}") from exc
    env.update(
        AWS_ENDPOINT_URL=emulator.endpoint_url,
        AWS_ACCESS_KEY_ID=env.get("AWS_ACCESS_KEY_ID", "testing"),
        AWS_SECRET_ACCESS_KEY=env.get("AWS_SECRET_ACCESS_KEY", "testing"),
        AWS_DEFAULT_REGION=env.get("AWS_DEFAULT_REGION", aws.DEFAULT_REGION),
    )
    set_environment(
        {
            k: env[k]
            for k in (
                "AWS_ENDPOINT_URL",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_DEFAULT_REGION",
            )
        }
    )
    return emulator


def _wait_started(what: str, url: str, child: Child) -> None:
    """Wait until ``child`` answers ``url``; a :class:`StartError` naming ``what`` if not."""
    try:
        wait_for_http(url, proc=child.proc)
    except (RuntimeError, TimeoutError) as exc:
        raise StartError(f"{what} did not start: {exc}") from exc


def _start_console(system: LocalSystem, port: int, log_dir: Path | None) -> Child:
    """Spawn ``conveyor console`` on ``port``; it scales through this system's supervisor."""
    env = dict(system.env)
    if system.state_dir is not None:
        # The supervisor's state: the console's pools page reads and scales it there.
        env["CONVEYOR_STATE_DIR"] = str(system.state_dir.parent)
    console = _spawn(
        "console", _conveyor("console", "--host", "127.0.0.1", "--port", str(port)), env, log_dir
    )
    system.children.append(console)
    system.console_url = f"http://127.0.0.1:{port}"
    return console


@contextmanager
def local_system(
    topology: Topology,
    *,
    use_emulator: bool,
    api_port: int | None = None,
    emulator_port: int = 0,
    log_dir: Path | None = None,
    state_dir: Path | None = None,
    autoscale: bool = False,
    console_port: int | None = None,
) -> Iterator[LocalSystem]:
    """Start everything, yield handles, stop everything (workers drain first).

    ``state_dir`` defaults to ``CONVEYOR_STATE_DIR``, else ``<log_dir>/state`` when
    a log directory is given, else ``.conveyor/state`` (see :mod:`ops.scaling.store`).
    ``console_port`` starts the web console there (0: any free port); None: no console.
    """
    env = child_environment(CONVEYOR_ENVIRONMENT=topology.environment)
    emulator: EmulatorProcess | None = None
    try:
        if use_emulator:
            # The embedded emulator is a local sandbox: its API runs without keys (contract C2).
            env.setdefault("CONVEYOR_API_AUTH", "none")
            emulator = _start_emulator(emulator_port, log_dir, env)
            aws.reset_clients()
            log.info("emulator.started", endpoint=emulator.endpoint_url)
        changes = apply(topology)
        log.info("topology.applied", changes=len(changes.changes))
        port = api_port or free_port()
        if state_dir is None and load_settings().scaling.state_dir is None and log_dir:
            state_dir = log_dir / "state"
        system = LocalSystem(
            topology,
            f"http://127.0.0.1:{port}",
            env,
            emulator_url=emulator.endpoint_url if emulator else None,
            log_dir=log_dir,
            state_dir=state_dir_for(topology, state_dir),
        )
        assert system.state_dir is not None
        supervisor = Supervisor(
            topology, system.state_dir, env=env, log_dir=log_dir, grace_s=STOP_GRACE_S
        )
        supervisor.acquire()  # a second `conveyor up` for the same environment stops here
        api = _spawn("api", _conveyor("api", "--port", str(port)), env, log_dir)
        system.children.append(api)
        # One scheduler publishes delayed jobs (any number could: each job is claimed).
        scheduler_port = free_port()
        scheduler = _spawn(
            "scheduler",
            _conveyor("scheduler", "--health-port", str(scheduler_port)),
            env,
            log_dir,
        )
        system.children.append(scheduler)
        system.scheduler_health_url = f"http://127.0.0.1:{scheduler_port}/healthz"
        console: Child | None = None
        if console_port is not None:
            console = _start_console(system, console_port or free_port(), log_dir)
        system.threads.append(_Service("supervisor", supervisor.run))
        if autoscale:
            backend = LocalBackend(topology, state_dir=system.state_dir, with_jobs=False)
            system.threads.append(_Service("autoscaler", Autoscaler(topology, backend).run))
        for thread in system.threads:
            thread.start()
        try:
            _wait_started("the producer API", f"{system.api_url}/healthz", api)
            _wait_started("the scheduler", system.scheduler_health_url, scheduler)
            if console is not None:
                _wait_started("the console", f"{system.console_url}/healthz", console)
            yield system
        finally:
            # The console and the scheduler first (no more actions, nothing more published),
            # then the workers (they drain), then the API, so nothing is accepted unprocessed.
            _stop([c for c in system.children if c.name in ("console", "scheduler")], 10.0)
            for thread in reversed(system.threads):
                thread.close(timeout_s=STOP_GRACE_S + 10.0)
            _stop([c for c in system.children if c.name == "api"], 10.0)
    finally:
        if emulator is not None:
            emulator.stop()
            log.info("emulator.stopped")
