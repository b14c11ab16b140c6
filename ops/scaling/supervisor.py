"""The local supervisor: worker node processes on this machine, as many as desired.

Every :data:`POLL_S` it compares each pool's desired replicas (the
:class:`~ops.scaling.store.DesiredStore`; a pool never scaled wants
``replicas.min``) with the nodes it runs, and

* starts ``conveyor worker --pool P`` nodes that are missing;
* scales in by sending SIGTERM to the newest nodes: a node stops receiving,
  finishes its jobs in hand, makes unstarted messages visible and exits
  (the worker runtime's drain), so nothing is lost;
* restarts a node that exited without being asked to, after a backoff that
  doubles while the pool keeps crashing (a crash loop does not spin); a node
  that exited to be recycled (``EXIT_RECYCLED``, its pool's recycling limits)
  is restarted at once and not counted as a crash.

Each node runs in its own session (a signal to the supervisor's terminal does not
reach it) with its own Prometheus directory and ``--health-port``, so
``conveyor workers ls`` can read its job counts from ``/metrics``. The status of
every node is written to ``supervisor.json`` in the state directory. One
supervisor per state directory: a second one refuses to start.

A node left behind by a supervisor that died is identified by its pid *and* its
process start time (``/proc/<pid>/stat`` field 22, clock ticks since boot, with
the boot id): a pid reused by another process (another environment's node runs
the very same command line) has another start time and is never signalled.
Desired replicas are clamped to the pool's ``replicas`` [min, max] from
queues.yaml, and at most :data:`MAX_STARTS_PER_TICK` nodes start per pass.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from infra.backoff import exponential_delay_s
from infra.errors import EXIT_RECYCLED
from infra.logs import get_logger
from infra.net import free_port
from infra.settings import child_environment
from infra.topology import Topology
from ops.scaling.errors import ScalingError
from ops.scaling.store import (
    DesiredStore,
    open_private,
    private_dir,
    read_status,
    status_path,
    write_json_atomic,
)

log = get_logger("conveyor.supervisor")

#: How often desired and actual state are compared (scaling applies within this).
POLL_S = 0.5
#: The status file is rewritten at least this often, as a heartbeat.
STATUS_EVERY_S = 2.0
#: A node that ran at least this long before exiting was not crash-looping.
STABLE_AFTER_S = 30.0
#: Nodes started per pool per pass: a desired count of hundreds (a typo, a bad
#: autoscaler input) ramps up over seconds instead of forking them all at once.
MAX_STARTS_PER_TICK = 4


@dataclass(frozen=True)
class RestartBackoff:
    """Delay before restarting a pool's node after its ``crashes``-th consecutive crash."""

    base_s: float = 0.5
    max_s: float = 30.0

    def delay_s(self, crashes: int) -> float:
        """``base_s * 2**(crashes - 1)``, capped at ``max_s`` (no jitter)."""
        return float(exponential_delay_s(max(1, crashes), base_s=self.base_s, cap_s=self.max_s))


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22).

    None when the process is gone or there is no /proc (then nothing is signalled).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command name) is in parentheses and may hold spaces and ")":
    # the fields after the last ")" start at field 3.
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[22 - 3])
    except (IndexError, ValueError):
        return None


def boot_id() -> str | None:
    """This boot's id: start ticks count from boot, so they compare within one boot only."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _is_worker_node(pid: int, pool: str, start_ticks: object, boot: object) -> bool:
    """``pid`` is still the node that was recorded, not a recycled pid.

    The recorded start time (and boot) must match: the command line alone would
    also match another environment's node, or any process that reused the pid
    with the same arguments. A record without a start time is never trusted.
    """
    if not isinstance(start_ticks, int) or boot is None or boot != boot_id():
        return False
    if process_start_ticks(pid) != start_ticks:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False  # gone meanwhile
    return b"conveyor" in argv and b"worker" in argv and pool.encode() in argv


@dataclass
class _Node:
    id: str
    pool: str
    proc: subprocess.Popen[bytes]
    started_at: float
    started_mono: float
    health_port: int
    metrics_dir: Path
    log_file: IO[bytes] | None
    #: When SIGTERM was sent (monotonic), for a node being scaled in or stopped.
    stopping_since: float | None = None
    #: The process's start time (see :func:`process_start_ticks`), its identity with the pid.
    start_ticks: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pid": self.proc.pid,
            "start_ticks": self.start_ticks,
            "state": "draining" if self.stopping_since is not None else "running",
            "started_at": self.started_at,
            "health_port": self.health_port,
        }


@dataclass
class _PoolRuntime:
    nodes: list[_Node] = field(default_factory=list)
    crashes: int = 0
    #: Nodes restarted after exiting unasked, since the supervisor started.
    restarts: int = 0
    restart_not_before: float = 0.0
    sequence: int = 0


class Supervisor:
    """Runs the nodes of ``pools`` (default: every pool of ``topology``) on this machine."""

    def __init__(
        self,
        topology: Topology,
        state_dir: Path,
        *,
        env: dict[str, str] | None = None,
        pools: Sequence[str] | None = None,
        log_dir: Path | None = None,
        grace_s: float = 30.0,
        backoff: RestartBackoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topology = topology
        self.state_dir = state_dir
        self.store = DesiredStore(state_dir)
        self.env = dict(env) if env is not None else child_environment()
        self.pools = list(pools if pools is not None else topology.pools)
        self.log_dir = log_dir
        self.grace_s = grace_s
        self.backoff = backoff or RestartBackoff()
        self._clock = clock
        self._runtime = {pool: _PoolRuntime() for pool in self.pools}
        self._lock_file: IO[str] | None = None
        self._status_written = 0.0
        self._last_written: tuple[tuple[str, int, bool], ...] | None = None
        self._host = os.uname().nodename
        self._boot_id = boot_id()
        self._started_at = time.time()

    # -- lifecycle -------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the state directory's supervisor lock, or raise ScalingError."""
        private_dir(self.state_dir)
        lock = os.fdopen(open_private(self.state_dir / "supervisor.lock"), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            other = read_status(self.state_dir)
            who = f" (pid {other.pid})" if other else ""
            raise ScalingError(
                f"a supervisor is already running for {self._name()}{who}; state: {self.state_dir}"
            ) from None
        self._lock_file = lock
        self._stop_orphans()

    def _stop_orphans(self) -> None:
        """SIGTERM nodes a previous supervisor of this state directory left running.

        Nodes run in their own sessions, so a supervisor killed with -9 leaves them
        behind; unsupervised, they would double the pool once this one starts its own.
        They drain like any scaled-in node.
        """
        previous = read_status(self.state_dir)
        if previous is None or previous.host != self._host:
            return
        boot = previous.raw.get("boot_id")
        for pool, reported in previous.pools.items():
            if not isinstance(reported, dict):
                continue
            for node in reported.get("nodes", []):
                if not isinstance(node, dict) or not isinstance(node.get("pid"), int):
                    continue
                pid = node["pid"]
                if pid > 0 and _is_worker_node(pid, pool, node.get("start_ticks"), boot):
                    log.warning("node.orphan_stopped", pool=pool, node=node.get("id"), pid=pid)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGTERM)
                elif pid > 0:
                    log.info("node.orphan_not_ours", pool=pool, node=node.get("id"), pid=pid)

    def force(self) -> None:
        """Signal draining nodes again: the worker's second signal stops at once."""
        for rt in self._runtime.values():
            for node in rt.nodes:
                if node.stopping_since is not None and node.proc.poll() is None:
                    node.proc.send_signal(signal.SIGTERM)

    def run(self, stop: threading.Event) -> None:
        """Reconcile until ``stop`` is set, then drain and stop every node."""
        if self._lock_file is None:
            self.acquire()
        log.info("supervisor.started", state_dir=str(self.state_dir), pools=self.pools)
        try:
            while not stop.is_set():
                self.reconcile()
                stop.wait(POLL_S)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """SIGTERM every node, wait for them to drain (then kill), release the lock."""
        nodes = [n for rt in self._runtime.values() for n in rt.nodes]
        for node in nodes:
            self._terminate(node)
        deadline = self._clock() + self.grace_s + 5.0
        for node in nodes:
            try:
                node.proc.wait(timeout=max(0.1, deadline - self._clock()))
            except subprocess.TimeoutExpired:
                log.warning("node.killed", node=node.id, after_s=self.grace_s)
                self._kill_group(node)
                node.proc.wait()
            self._forget(node, expected=True)
        for rt in self._runtime.values():
            rt.nodes.clear()
        self._write_status(force=True, stopped=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        log.info("supervisor.stopped")

    # -- reconciling -----------------------------------------------------------------

    def desired(self) -> dict[str, int]:
        """Desired replicas of each supervised pool (stored, else ``replicas.min``).

        Clamped to the pool's ``replicas`` [min, max]: the store is a file anyone
        with access to the state directory can write.
        """
        stored = self.store.read()
        desired: dict[str, int] = {}
        for pool in self.pools:
            replicas = self.topology.pools[pool].replicas
            want = stored.get(pool, replicas.min)
            desired[pool] = min(max(want, replicas.min), replicas.max)
        return desired

    def reconcile(self) -> None:
        """One pass: reap exited nodes, then start or stop nodes to match the desired state."""
        desired = self.desired()
        now = self._clock()
        for pool, rt in self._runtime.items():
            self._reap(pool, rt, now)
            active = [n for n in rt.nodes if n.stopping_since is None]
            want = desired[pool]
            if len(active) > want:
                # Newest first: the oldest nodes have warm caches and the longest uptime.
                for node in sorted(active, key=lambda n: n.started_mono)[want:]:
                    log.info("node.scale_in", pool=pool, node=node.id, pid=node.proc.pid)
                    self._terminate(node)
            elif len(active) < want and now >= rt.restart_not_before:
                for _ in range(min(want - len(active), MAX_STARTS_PER_TICK)):
                    rt.nodes.append(self._start(pool, rt))
            for node in rt.nodes:
                if node.stopping_since is not None and now - node.stopping_since > self.grace_s + 5:
                    log.warning("node.killed", node=node.id, after_s=self.grace_s)
                    self._kill_group(node)
        self._write_status()

    def _reap(self, pool: str, rt: _PoolRuntime, now: float) -> None:
        for node in list(rt.nodes):
            code = node.proc.poll()
            if code is None:
                continue
            rt.nodes.remove(node)
            expected = node.stopping_since is not None
            ran_s = now - node.started_mono
            self._forget(node, expected=expected)
            if expected:
                log.info(
                    "node.stopped", pool=pool, node=node.id, exit_code=code, ran_s=round(ran_s, 1)
                )
                continue
            if code == EXIT_RECYCLED:
                # It drained like a scale-in and asks for a fresh node: no backoff.
                rt.restarts += 1
                log.info("node.recycled", pool=pool, node=node.id, ran_s=round(ran_s, 1))
                continue
            rt.restarts += 1
            rt.crashes = 1 if ran_s >= STABLE_AFTER_S else rt.crashes + 1
            delay_s = self.backoff.delay_s(rt.crashes)
            rt.restart_not_before = now + delay_s
            log.error(
                "node.exited",
                pool=pool,
                node=node.id,
                pid=node.proc.pid,
                exit_code=code,
                ran_s=round(ran_s, 1),
                consecutive_crashes=rt.crashes,
                restart_in_s=delay_s,
            )

    def _start(self, pool: str, rt: _PoolRuntime) -> _Node:
        rt.sequence += 1
        node_id = f"{pool}-{rt.sequence}"
        port = free_port()
        metrics_dir = self.state_dir / "metrics" / node_id
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env = {
            **self.env,
            # Each node counts its own jobs: a shared directory would add them up.
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "CONVEYOR_NODE_ID": node_id,
        }
        log_file = None
        if self.log_dir is not None:
            # One file per pool, as `conveyor up` always wrote; nodes append lines.
            log_file = open(self.log_dir / f"worker-{pool}.log", "ab")  # noqa: SIM115 - closed in _forget
        argv = [sys.executable, "-m", "conveyor", "worker", "--pool", pool]
        proc = subprocess.Popen(
            [*argv, "--health-port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # our own signals only; and a group to kill orphans with
        )
        log.info("node.started", pool=pool, node=node_id, pid=proc.pid, health_port=port)
        return _Node(
            node_id,
            pool,
            proc,
            time.time(),
            self._clock(),
            port,
            metrics_dir,
            log_file,
            # Read while the child is ours and unreaped: its pid cannot be reused yet.
            start_ticks=process_start_ticks(proc.pid),
        )

    def _terminate(self, node: _Node) -> None:
        if node.stopping_since is None and node.proc.poll() is None:
            node.stopping_since = self._clock()
            node.proc.send_signal(signal.SIGTERM)  # the node drains

    def _kill_group(self, node: _Node) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(node.proc.pid, signal.SIGKILL)

    def _forget(self, node: _Node, *, expected: bool) -> None:
        if not expected:
            # A node killed with -9 leaves its pool processes behind: stop them too.
            self._kill_group(node)
        if node.log_file is not None:
            node.log_file.close()
        shutil.rmtree(node.metrics_dir, ignore_errors=True)

    # -- status ------------------------------------------------------------------------

    def _name(self) -> str:
        return f"{self.topology.project}-{self.topology.environment}"

    def status(self) -> dict[str, Any]:
        """The status document ``workers ls`` reads."""
        desired = self.desired()
        return {
            "pid": os.getpid(),
            "host": self._host,
            "boot_id": self._boot_id,
            "started_at": self._started_at,
            "updated_at": time.time(),
            "pools": {
                pool: {
                    "desired": desired[pool],
                    "nodes": [n.to_json() for n in rt.nodes],
                    "crashes": rt.crashes,
                    "restarts": rt.restarts,
                }
                for pool, rt in self._runtime.items()
            },
        }

    def _write_status(self, *, force: bool = False, stopped: bool = False) -> None:
        now = self._clock()
        if not force and now - self._status_written < STATUS_EVERY_S and not self._changed():
            return
        document = self.status()
        if stopped:
            document["updated_at"] = 0.0  # readers see at once that nobody supervises
        write_json_atomic(status_path(self.state_dir), document)
        self._status_written = now
        self._last_written = self._fingerprint()

    def _fingerprint(self) -> tuple[tuple[str, int, bool], ...]:
        return tuple(
            (n.id, n.proc.pid, n.stopping_since is None)
            for rt in self._runtime.values()
            for n in rt.nodes
        )

    def _changed(self) -> bool:
        return self._last_written != self._fingerprint()
