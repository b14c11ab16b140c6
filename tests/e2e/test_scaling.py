"""Scaling with the local backend: the real CLI, supervisor and nodes on the emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conveyor.system import local_system
from infra import aws
from infra.envelope import encode, make_envelope
from infra.provision import apply
from infra.topology import Topology, load_topology
from ops.scaling.backends.local import LocalBackend
from ops.scaling.model import PoolState
from ops.scaling.store import read_status
from tests import REPO
from tests.support import outbox as handler_outbox
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from tests.support.processes import CONVEYOR, Child
from tests.support.queues import depth

pytestmark = pytest.mark.e2e

TOPOLOGY = REPO / "tests" / "fixtures" / "scaling.yaml"


def conveyor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class Scaling:
    topology: Topology
    env: dict[str, str]
    state_dir: Path
    outbox: Path
    url: str
    log_dir: Path
    procs: list[Child] = field(default_factory=list)

    def start(self, name: str, *args: str) -> Child:
        """A long-running CLI command (supervisor, autoscaler), its output in <name>.log."""
        child = Child(name, [*CONVEYOR, *args], env=self.env, log_dir=self.log_dir)
        self.procs.append(child)
        return child

    def log(self, name: str) -> list[dict[str, Any]]:
        path = self.log_dir / f"{name}.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]

    def ready_nodes(self, count: int) -> PoolState | None:
        """The pool when exactly ``count`` nodes run, none drains, and every one answers."""
        state = LocalBackend(self.topology, state_dir=self.pool_dir).pools(["main"])["main"]
        ok = (
            state.running == count
            and len(state.nodes) == count
            and all(n.jobs_succeeded is not None for n in state.nodes)  # /metrics answers
        )
        return state if ok else None

    @property
    def pool_dir(self) -> Path:
        return self.state_dir / f"{self.topology.project}-{self.topology.environment}"

    def send(self, count: int, seconds: float) -> list[str]:
        sqs = aws.client("sqs")
        ids: list[str] = []
        for start in range(0, count, 10):
            entries = []
            for i in range(start, min(count, start + 10)):
                envelope = make_envelope("test.sleep", {"seconds": seconds})
                ids.append(envelope.id)
                entries.append({"Id": str(i), "MessageBody": encode(envelope)})
            sqs.send_message_batch(QueueUrl=self.url, Entries=entries)  # type: ignore[arg-type]
        return ids

    def outcomes(self, job_id: str) -> list[str]:
        return handler_outbox.outcomes(self.outbox, job_id)


@pytest.fixture
def scaling(aws_env: AwsEnv, tmp_path: Path) -> Iterator[Scaling]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    env = {
        **aws_env.env,
        "CONVEYOR_QUEUES_FILE": str(TOPOLOGY),
        "CONVEYOR_TEST_OUTBOX": str(outbox),
        "CONVEYOR_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(REPO),
        "CONVEYOR_WORKER_SHUTDOWN_GRACE_S": "30",
        "CONVEYOR_API_AUTH": "none",
    }
    topology = load_topology(TOPOLOGY, environment=aws_env.environment)
    apply(topology)
    url = aws.client("sqs").get_queue_url(QueueName=topology.queue_name("work"))["QueueUrl"]
    s = Scaling(topology, env, tmp_path / "state", outbox, url, tmp_path)
    yield s
    for proc in reversed(s.procs):
        proc.stop(timeout_s=60)  # SIGTERM: the supervisor drains its nodes


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie whose parent died does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_scale_to_three_then_ls_shows_three_nodes(scaling: Scaling) -> None:
    scaling.start("supervisor", "workers", "up")
    eventually(lambda: scaling.ready_nodes(1), what="the pool's one node (replicas.min)")

    done = conveyor(scaling.env, "workers", "scale", "main=3", "--wait")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["main: 1 → 3", "running: main=3"]

    state = eventually(lambda: scaling.ready_nodes(3), what="three nodes")
    pids = {n.pid for n in state.nodes}
    assert len(pids) == 3
    assert all(pid is not None and _alive(pid) for pid in pids)

    listed = conveyor(scaling.env, "workers", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    (pool,) = json.loads(listed.stdout)["pools"]
    assert (pool["pool"], pool["desired"], pool["running"]) == ("main", 3, 3)
    assert {n["pid"] for n in pool["nodes"]} == pids
    assert all(n["uptime_s"] >= 0 and n["jobs_succeeded"] == 0 for n in pool["nodes"])


def test_scale_in_while_jobs_run_loses_and_repeats_nothing(scaling: Scaling) -> None:
    scaling.start("supervisor", "workers", "up")
    assert conveyor(scaling.env, "workers", "scale", "main=3").returncode == 0
    eventually(lambda: scaling.ready_nodes(3), what="three nodes")
    ids = scaling.send(200, seconds=0.1)
    eventually(
        lambda: sum(1 for i in ids if "ok" in scaling.outcomes(i)) >= 20,
        what="the first jobs to finish on three nodes",
    )

    assert conveyor(scaling.env, "workers", "scale", "main=1").stdout.strip() == "main: 3 → 1"
    eventually(
        lambda: all("ok" in scaling.outcomes(i) for i in ids),
        timeout_s=120,
        what="all 200 jobs to finish",
    )
    eventually(lambda: scaling.ready_nodes(1), what="one node left")

    runs = {i: scaling.outcomes(i) for i in ids}
    assert all(outcomes.count("ok") == 1 for outcomes in runs.values())  # none finished twice
    # The two nodes scaled in drained: they finished their jobs in hand and exited 0.
    stopped = [e for e in scaling.log("supervisor") if e["event"] == "node.stopped"]
    assert len(stopped) == 2
    assert all(e["exit_code"] == 0 for e in stopped)
    assert depth(scaling.url).visible == 0


def test_a_node_killed_with_9_is_restarted(scaling: Scaling) -> None:
    scaling.start("supervisor", "workers", "up")
    (node,) = eventually(lambda: scaling.ready_nodes(1), what="the node").nodes
    assert node.pid is not None
    os.kill(node.pid, signal.SIGKILL)

    def replaced() -> PoolState | None:
        state = scaling.ready_nodes(1)
        return state if state is not None and state.nodes[0].pid != node.pid else None

    (again,) = eventually(replaced, what="a new node in its place").nodes
    assert again.id != node.id
    exited = [e for e in scaling.log("supervisor") if e["event"] == "node.exited"]
    assert [(e["node"], e["exit_code"]) for e in exited] == [(node.id, -signal.SIGKILL)]
    ids = scaling.send(3, seconds=0.01)  # and the new node works
    eventually(lambda: all("ok" in scaling.outcomes(i) for i in ids), what="jobs on the new node")


def test_nodes_left_by_a_killed_supervisor_are_drained_by_the_next(scaling: Scaling) -> None:
    first = scaling.start("supervisor", "workers", "up")
    (orphan,) = eventually(lambda: scaling.ready_nodes(1), what="the node").nodes
    first.proc.kill()  # the supervisor only: its node lives on in its own session
    first.proc.wait()
    assert orphan.pid is not None
    assert _alive(orphan.pid)

    scaling.start("supervisor-2", "workers", "up")
    eventually(lambda: not _alive(orphan.pid or 0), what="the orphan to drain and exit")
    (node,) = eventually(lambda: scaling.ready_nodes(1), what="the new supervisor's node").nodes
    assert node.pid != orphan.pid
    stopped = [e for e in scaling.log("supervisor-2") if e["event"] == "node.orphan_stopped"]
    assert [e["pid"] for e in stopped] == [orphan.pid]


@pytest.mark.slow
def test_the_autoscaler_scales_out_to_max_and_back_to_min(scaling: Scaling) -> None:
    scaling.start("supervisor", "workers", "up")
    eventually(lambda: scaling.ready_nodes(1), what="the pool's one node")
    # One node (4 threads) runs 8 of these a second: alone it needs 20 s to bring the
    # backlog under 3 nodes' worth (41), far longer than the autoscaler takes to start on
    # a loaded machine. (With 0.1 s jobs a CI run once saw it start too late: the pool
    # never reached 3.)
    ids = scaling.send(200, seconds=0.5)
    scaling.start("autoscaler", "workers", "autoscale")

    eventually(lambda: scaling.ready_nodes(3), what="the pool at its max (3)")
    eventually(lambda: all("ok" in scaling.outcomes(i) for i in ids), what="the backlog to drain")
    eventually(lambda: scaling.ready_nodes(1), what="the pool back at its min (1)")

    decisions = [e for e in scaling.log("autoscaler") if e["event"] == "autoscale.decision"]
    moves = [(d["action"], d["current"], d["desired"]) for d in decisions if d["action"] != "hold"]
    assert moves[0] == ("scale_out", 1, 3)  # at once, straight to the max
    # Then in, possibly in steps (to the highest recommendation of the cooldown window),
    # and only downwards: it never flapped back out.
    ins = moves[1:]
    assert ins
    assert all(action == "scale_in" for action, _, _ in ins)
    assert [current for _, current, _ in ins] == [3, *[after for _, _, after in ins[:-1]]]
    assert ins[-1][2] == 1
    out = next(d for d in decisions if d["action"] == "scale_out")
    assert out["backlog"] >= 60  # ceil(backlog / 20) >= 3
    assert out["target_backlog_per_worker"] == 20
    assert (out["min_replicas"], out["max_replicas"]) == (1, 3)
    last_in = [d for d in decisions if d["action"] == "scale_in"][-1]
    assert last_in["recommended"] == 1  # backlog <= 20: one node's worth
    assert all("scale-in cooldown" in d["reason"] for d in decisions if d["action"] == "scale_in")
    # Before scaling in, it held while the low backlog had not yet lasted the cooldown.
    assert any(
        d["action"] == "hold" and d["current"] == 3 and d["recommended"] < 3 for d in decisions
    )


def test_conveyor_up_runs_the_pools_through_the_supervisor(
    scaling: Scaling, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("CONVEYOR_QUEUES_FILE", "CONVEYOR_STATE_DIR", "PYTHONPATH", "CONVEYOR_API_AUTH"):
        monkeypatch.setenv(key, scaling.env[key])
    with local_system(scaling.topology, use_emulator=False, log_dir=scaling.log_dir) as system:
        assert system.state_dir == scaling.pool_dir  # where `workers scale` finds it
        (first,) = eventually(lambda: scaling.ready_nodes(1), what="one node").nodes
        done = conveyor(scaling.env, "workers", "scale", "main=2")
        assert done.stdout.strip() == "main: 1 → 2", done.stderr
        eventually(lambda: scaling.ready_nodes(2), what="two nodes")

        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)  # before the supervisor, this stopped `conveyor up`

        def replaced() -> PoolState | None:
            state = scaling.ready_nodes(2)
            pids = {n.pid for n in state.nodes} if state else set()
            return state if state is not None and first.pid not in pids else None

        eventually(replaced, what="the killed node replaced")
        assert system.failures() == []
    status = read_status(scaling.pool_dir)
    assert status is not None
    assert not status.alive()  # stopped with the system, its nodes drained
