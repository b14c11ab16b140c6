"""The fault suite's kill -9, SIGTERM and load scenarios on a threads and an asyncio pool.

The same scenarios as test_kill9.py, test_sigterm.py and test_load.py (called, not
copied), on tests/faults/faults.yaml with both pools switched to ``worker_pool:
threads`` — or to ``asyncio``, with the handlers' ``async def`` twins from
tests/async_jobs.py. Each line of figures names the pool kind; lost = 0 in each.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from infra.provision import apply
from infra.topology import load_topology
from tests import REPO
from tests.faults import test_kill9, test_load, test_sigterm
from tests.faults.harness import TOPOLOGY, Cluster, Tally
from tests.support.emulator import AwsEnv

KINDS = ["threads", "asyncio"]


def topology_text(kind: str) -> str:
    """faults.yaml with both pools of ``kind`` (and async handlers for asyncio)."""
    text = TOPOLOGY.read_text()
    assert text.count("    concurrency: 4\n") == 2
    text = text.replace("    concurrency: 4\n", f"    concurrency: 4\n    worker_pool: {kind}\n")
    if kind == "asyncio":
        text = text.replace('handler: "tests.jobs:', 'handler: "tests.async_jobs:')
    return text


class KindCluster(Cluster):
    """A :class:`Cluster` whose figures name its pool kind."""

    kind = ""

    def settle(self, scenario: str, accepted: Sequence[str], **options: Any) -> Tally:
        return super().settle(f"{scenario} ({self.kind} pool)", accepted, **options)


@pytest.fixture(params=KINDS)
def kind_cluster(
    request: pytest.FixtureRequest, aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KindCluster]:
    """The fault topology with threads or asyncio pools, provisioned under a fresh name."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    path = tmp_path / "faults.yaml"
    path.write_text(topology_text(request.param))
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(path))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    topology = load_topology(path)
    apply(topology)
    system = KindCluster(topology, dict(os.environ), outbox, tmp_path)
    system.kind = request.param
    try:
        yield system
    finally:
        system.close()


def test_the_topologies_are_what_they_say(tmp_path: Path) -> None:
    for kind in KINDS:
        path = tmp_path / f"{kind}.yaml"
        path.write_text(topology_text(kind))
        topology = load_topology(path)
        assert {p.worker_pool for p in topology.pools.values()} == {kind}
        modules = {jt.handler.split(":")[0] for jt in topology.job_types.values() if jt.handler}
        assert modules == {"tests.async_jobs" if kind == "asyncio" else "tests.jobs"}


def test_kill_9_of_random_nodes_loses_no_job(kind_cluster: KindCluster) -> None:
    test_kill9.test_kill_9_of_random_nodes_loses_no_job(kind_cluster)


def test_sigterm_scale_in_under_load_loses_and_repeats_nothing(kind_cluster: KindCluster) -> None:
    test_sigterm.test_sigterm_scale_in_under_load_loses_and_repeats_nothing(kind_cluster)


def test_sigterm_while_jobs_are_handed_out_runs_each_job_once(kind_cluster: KindCluster) -> None:
    test_sigterm.test_sigterm_while_jobs_are_handed_out_runs_each_job_once(kind_cluster)


def test_load_across_all_pools_loses_no_job(kind_cluster: KindCluster) -> None:
    test_load.test_load_across_all_pools_loses_no_job(kind_cluster)
