"""Recycling: the pool's fields and checks, the policy, the node recycler, the supervisor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.errors import EXIT_RECYCLED
from infra.topology import Topology, TopologyError, load_topology
from infra.topology.checks import check_topology
from ops.scaling.store import state_dir_for
from ops.scaling.supervisor import Supervisor, _Node, _PoolRuntime
from tests import REPO
from workers.app import create_app
from workers.recycling import MIB, NodeRecycler, RecyclePolicy, current_rss_bytes
from workers.transport import QueueBinding

SCALING = REPO / "tests" / "fixtures" / "scaling.yaml"


def _topology(tmp_path: Path, pool: str) -> Path:
    path = tmp_path / "queues.yaml"
    path.write_text(
        "version: 1\n"
        "topics: {jobs: {}}\n"
        "queues: {work: {subscriptions: [{topic: jobs}]}}\n"
        "job_types:\n"
        "  t.job: {topic: jobs, payload: 'tests.jobs:Note', handler: 'tests.jobs:record'}\n"
        f"pools:\n  main: {{queues: [work], {pool}}}\n"
    )
    return path


def _problems(tmp_path: Path, pool: str) -> list[str]:
    """What loading the file reports (loading runs the static checks)."""
    try:
        topology = load_topology(_topology(tmp_path, pool))
    except TopologyError as exc:
        return [f"{p.path}: {p.message}" for p in exc.problems]
    assert check_topology(topology) == []
    return []


def test_unset_limits_mean_no_recycling(tmp_path: Path) -> None:
    pool = load_topology(_topology(tmp_path, "concurrency: 2")).pools["main"]
    assert pool.max_jobs_per_child is None
    assert pool.max_memory_per_child_mb is None
    assert not RecyclePolicy.of(pool).enabled


@pytest.mark.parametrize(
    ("pool", "key"),
    [
        ("max_jobs_per_child: 0", "max_jobs_per_child"),
        ("max_memory_per_child_mb: -5", "max_memory_per_child_mb"),
        ("max_jobs_per_child: lots", "max_jobs_per_child"),
    ],
)
def test_out_of_range_limits_are_refused_in_one_line(tmp_path: Path, pool: str, key: str) -> None:
    with pytest.raises(TopologyError) as caught:
        load_topology(_topology(tmp_path, pool))
    message = str(caught.value)
    assert f"pools.main.{key}" in message
    assert "Traceback" not in message


def test_a_memory_limit_below_a_fresh_process_is_a_problem(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, "max_memory_per_child_mb: 64")
    assert problem.startswith("pools.main.max_memory_per_child_mb: 64 MiB is below 128 MiB")
    assert "\n" not in problem
    assert _problems(tmp_path, "max_memory_per_child_mb: 128") == []


@pytest.mark.parametrize("kind", ["threads", "solo"])
def test_a_node_pool_recycling_before_it_used_its_slots_is_a_problem(
    tmp_path: Path, kind: str
) -> None:
    concurrency = 4 if kind == "threads" else 1
    pool = f"worker_pool: {kind}, concurrency: {concurrency}, max_jobs_per_child: 0"
    if kind == "threads":
        [problem] = _problems(tmp_path, pool.replace(": 0", ": 3"))
        assert problem.startswith("pools.main.max_jobs_per_child: 3 is below concurrency (4)")
    assert _problems(tmp_path, pool.replace(": 0", f": {concurrency}")) == []


def test_a_prefork_pool_may_recycle_after_every_job(tmp_path: Path) -> None:
    assert _problems(tmp_path, "concurrency: 4, max_jobs_per_child: 1") == []


def test_prefork_limits_become_celerys_settings(tmp_path: Path) -> None:
    topology = load_topology(
        _topology(tmp_path, "max_jobs_per_child: 50, max_memory_per_child_mb: 300")
    )
    policy = RecyclePolicy.of(topology.pools["main"])
    assert policy.celery_settings() == {
        "worker_max_tasks_per_child": 50,
        "worker_max_memory_per_child": 300 * 1024,  # Celery counts KiB
    }
    binding = QueueBinding(
        queue="work",
        url="http://localhost/q",
        dlq_url="http://localhost/q-dlq",
        fifo=False,
        job_types=frozenset({"t.job"}),
        visibility_timeout_s=30,
        max_runtime_s={},
    )
    app = create_app(topology, ["work"], bindings=[binding], recycling=policy)
    assert app.conf.worker_max_tasks_per_child == 50
    assert app.conf.worker_max_memory_per_child == 300 * 1024
    threads = create_app(
        topology, ["work"], bindings=[binding], recycling=policy, worker_pool="threads"
    )
    assert threads.conf.worker_max_tasks_per_child is None  # the node recycles instead


def test_the_node_recycler_fires_once_after_the_job_that_reached_the_count() -> None:
    reasons: list[str] = []
    recycler = NodeRecycler(RecyclePolicy(max_jobs=3), reasons.append, rss_bytes=lambda: 0)
    for _ in range(2):
        recycler.job_finished()
    assert reasons == []
    for _ in range(3):  # the jobs still in hand finish while the node drains
        recycler.job_finished()
    assert reasons == ["3 jobs (max_jobs_per_child 3)"]
    assert recycler.jobs == 5


def test_the_node_recycler_fires_past_the_memory_ceiling() -> None:
    rss = [100 * MIB]
    reasons: list[str] = []
    recycler = NodeRecycler(
        RecyclePolicy(max_rss_bytes=200 * MIB), reasons.append, rss_bytes=lambda: rss[0]
    )
    recycler.job_finished()
    assert reasons == []
    rss[0] = 201 * MIB
    recycler.job_finished()
    assert reasons == ["201 MiB resident (max_memory_per_child_mb 200)"]


def test_current_rss_is_this_process() -> None:
    assert 10 * MIB < current_rss_bytes() < 10_000 * MIB


class _Exited:
    def __init__(self, pid: int, code: int) -> None:
        self.pid = pid
        self.returncode = code

    def poll(self) -> int:
        return self.returncode


class _Running:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> None:
        return None


@pytest.mark.parametrize(("code", "backoff"), [(EXIT_RECYCLED, False), (1, True)])
def test_the_supervisor_restarts_a_recycled_node_at_once_and_a_crashed_one_after_a_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, backoff: bool
) -> None:
    topology: Topology = load_topology(SCALING, environment="unit")
    supervisor = Supervisor(topology, state_dir_for(topology, tmp_path), clock=lambda: 1000.0)
    started: list[int] = []

    def fake_start(self: Supervisor, pool_name: str, rt: _PoolRuntime) -> _Node:
        rt.sequence += 1
        started.append(rt.sequence)
        # The first node exits (recycled or crashed) as soon as it is looked at.
        proc: Any = _Exited(100_000, code) if rt.sequence == 1 else _Running(100_000 + rt.sequence)
        return _Node(f"{pool_name}-{rt.sequence}", pool_name, proc, 0.0, 1000.0, 0, tmp_path, None)

    monkeypatch.setattr(Supervisor, "_start", fake_start)
    monkeypatch.setattr(Supervisor, "_forget", lambda self, node, expected: None)
    supervisor.reconcile()  # starts node 1
    supervisor.reconcile()  # reaps it: recycled -> node 2 in the same pass
    assert started == ([1] if backoff else [1, 2])
    runtime = supervisor._runtime["main"]
    assert runtime.restarts == 1
    assert runtime.crashes == (1 if backoff else 0)
