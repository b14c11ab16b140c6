"""The local supervisor signals only its own nodes, keeps its state private, clamps and paces.

* A node left by a dead supervisor is recognised by pid *and* start time: a process
  that reused the pid with the very same command line is not signalled.
* State files are written through ``mkstemp`` + rename, 0600 in a 0700 directory.
* Desired replicas are clamped to the pool's [min, max]; starts are paced per pass.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.topology import Topology, load_topology
from ops.scaling import supervisor as supervisor_module
from ops.scaling.store import DesiredStore, state_dir_for, status_path, write_json_atomic
from ops.scaling.supervisor import (
    MAX_STARTS_PER_TICK,
    Supervisor,
    _Node,
    _PoolRuntime,
    boot_id,
    process_start_ticks,
)
from tests import REPO

SCALING = REPO / "tests" / "fixtures" / "scaling.yaml"

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@pytest.fixture
def topology() -> Topology:
    return load_topology(SCALING, environment="unit")


@pytest.fixture
def lookalike() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line is a node's (``conveyor worker --pool main``)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.stdin.read()",
            "conveyor",
            "worker",
            "--pool",
            "main",
        ],
        stdin=subprocess.PIPE,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _orphan_status(state: Path, pid: int, start_ticks: int | None) -> None:
    node: dict[str, Any] = {"id": "main-1", "pid": pid, "state": "running", "started_at": 0.0}
    if start_ticks is not None:
        node["start_ticks"] = start_ticks
    write_json_atomic(
        status_path(state),
        {
            "pid": 1,
            "host": os.uname().nodename,
            "boot_id": boot_id(),
            "updated_at": 0.0,
            "pools": {"main": {"nodes": [node]}},
        },
    )


def test_start_ticks_come_from_proc_stat(lookalike: subprocess.Popen[bytes]) -> None:
    mine = process_start_ticks(os.getpid())
    theirs = process_start_ticks(lookalike.pid)
    assert mine is not None
    assert theirs is not None
    assert theirs >= mine  # started after this process
    assert process_start_ticks(2**22 + 1) is None  # above any pid_max: no such process


@pytest.mark.parametrize("recorded", ["another start time", "no start time"])
def test_a_reused_pid_with_a_nodes_command_line_is_not_signalled(
    topology: Topology,
    tmp_path: Path,
    lookalike: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
    recorded: str,
) -> None:
    state = state_dir_for(topology, tmp_path)
    ticks = process_start_ticks(lookalike.pid)
    assert ticks is not None
    # The recorded node started at another time: its pid now belongs to someone else.
    _orphan_status(state, lookalike.pid, ticks - 1 if recorded == "another start time" else None)
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(supervisor_module.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    supervisor = Supervisor(topology, state)
    supervisor.acquire()
    try:
        assert sent == []
    finally:
        monkeypatch.undo()
        supervisor.shutdown()
    assert lookalike.poll() is None


def test_the_recorded_node_itself_is_still_stopped(
    topology: Topology, tmp_path: Path, lookalike: subprocess.Popen[bytes]
) -> None:
    state = state_dir_for(topology, tmp_path)
    _orphan_status(state, lookalike.pid, process_start_ticks(lookalike.pid))
    supervisor = Supervisor(topology, state)
    supervisor.acquire()
    supervisor.shutdown()
    assert lookalike.wait(timeout=30) == -signal.SIGTERM


def test_state_files_are_private_and_written_through_an_unguessable_name(tmp_path: Path) -> None:
    state = tmp_path / "state" / "sc-unit"
    state.mkdir(parents=True, mode=0o755)
    os.chmod(state, 0o755)  # noqa: S103 - as an older release left it
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    # The name the old code wrote through: a planted symlink must not be followed.
    (state / f".desired.json.{os.getpid()}.tmp").symlink_to(victim)
    DesiredStore(state).update({"main": 2})
    assert victim.read_text() == "untouched"
    assert DesiredStore(state).read() == {"main": 2}
    assert (state.stat().st_mode & 0o777) == 0o700
    assert ((state / "desired.json").stat().st_mode & 0o777) == 0o600
    assert ((state / "desired.lock").stat().st_mode & 0o777) == 0o600
    leftovers = [p.name for p in state.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]
    assert leftovers == []


def test_a_new_state_directory_is_created_private(topology: Topology, tmp_path: Path) -> None:
    state = state_dir_for(topology, tmp_path)
    supervisor = Supervisor(topology, state)
    supervisor.acquire()
    supervisor.shutdown()
    assert (state.stat().st_mode & 0o777) == 0o700
    for name in ("supervisor.json", "supervisor.lock"):
        assert ((state / name).stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize(("stored", "expected"), [(1000, 3), (0, 1), (2, 2), (-5, 1)])
def test_desired_replicas_are_clamped_to_the_pool(
    topology: Topology, tmp_path: Path, stored: int, expected: int
) -> None:
    state = state_dir_for(topology, tmp_path)
    # Written straight to the file, as anyone with access to the directory could.
    write_json_atomic(state / "desired.json", {"pools": {"main": stored}})
    assert Supervisor(topology, state).desired() == {"main": expected}


class _Running:
    """Stands in for a node's Popen: a process that keeps running."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> None:
        return None


def test_starts_are_paced_per_pass(
    topology: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = topology.pools["main"].model_copy(
        update={"replicas": topology.pools["main"].replicas.model_copy(update={"max": 10})}
    )
    wide = topology.model_copy(update={"pools": {"main": pool}})
    state = state_dir_for(wide, tmp_path)
    DesiredStore(state).update({"main": 10})
    supervisor = Supervisor(wide, state)
    started: list[str] = []

    def fake_start(self: Supervisor, pool_name: str, rt: _PoolRuntime) -> _Node:
        rt.sequence += 1
        started.append(pool_name)
        proc: Any = _Running(100_000 + rt.sequence)
        return _Node(f"{pool_name}-{rt.sequence}", pool_name, proc, 0.0, 0.0, 0, tmp_path, None)

    monkeypatch.setattr(Supervisor, "_start", fake_start)
    counts = []
    for _ in range(4):
        supervisor.reconcile()
        counts.append(len(started))
    assert counts == [MAX_STARTS_PER_TICK, 2 * MAX_STARTS_PER_TICK, 10, 10]
