"""Pools' autoscale block: loaded, checked with readable errors, and used by both exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.export import cloudformation_template, kubernetes_manifests
from infra.topology import TopologyError, load_topology
from ops.scaling.errors import ScalingError
from ops.scaling.store import DesiredStore, read_status, state_dir_for
from ops.scaling.supervisor import RestartBackoff, Supervisor
from tests import REPO

SCALING = REPO / "tests" / "fixtures" / "scaling.yaml"


def _with_pool(tmp_path: Path, pool_yaml: str) -> Path:
    text = SCALING.read_text()
    head = text[: text.index("pools:")]
    path = tmp_path / "queues.yaml"
    path.write_text(head + "pools:\n  main:\n    queues: [work]\n" + pool_yaml)
    return path


def test_the_fixture_loads_with_its_timings() -> None:
    auto = load_topology(SCALING).pools["main"].autoscaling
    assert (auto.target_backlog_per_worker, auto.interval_s) == (20, 0.5)
    assert (auto.scale_out_cooldown_s, auto.scale_in_cooldown_s) == (1.0, 4.0)


def test_a_pool_without_autoscale_gets_the_defaults(tmp_path: Path) -> None:
    pool = load_topology(_with_pool(tmp_path, "    replicas: {min: 1, max: 2}\n")).pools["main"]
    assert pool.autoscale is None
    assert pool.autoscaling.target_backlog_per_worker == 10
    assert pool.autoscaling.scale_in_cooldown_s == 300


@pytest.mark.parametrize(
    ("pool_yaml", "problem"),
    [
        (
            "    replicas: {min: 1, max: 3}\n    autoscale: {target_backlog_per_worker: 0}\n",
            "pools.main.autoscale.target_backlog_per_worker: Input should be greater than or"
            " equal to 1",
        ),
        (
            "    replicas: {min: 1, max: 3}\n    autoscale: {interval_s: 0s}\n",
            "pools.main.autoscale.interval_s: invalid duration '0s': must be between",
        ),
        (
            "    replicas: {min: 1, max: 3}\n    autoscale: {cooldown_s: 5}\n",
            "pools.main.autoscale.cooldown_s: unknown key 'cooldown_s' (allowed: interval_s,"
            " scale_in_cooldown_s, scale_out_cooldown_s, target_backlog_per_worker)",
        ),
        (
            "    replicas: {min: 2, max: 2}\n    autoscale: {target_backlog_per_worker: 5}\n",
            "pools.main.autoscale: autoscale has no room: replicas.min and replicas.max are"
            " both 2 (widen the bounds or remove autoscale)",
        ),
        (
            "    replicas: {min: 1, max: 3}\n"
            "    autoscale: {interval_s: 30s, scale_in_cooldown_s: 10s}\n",
            "pools.main.autoscale.scale_in_cooldown_s: scale_in_cooldown_s (10) must not be"
            " below interval_s (30): the backlog is sampled once per interval",
        ),
    ],
)
def test_bad_autoscale_names_file_key_and_problem(
    tmp_path: Path, pool_yaml: str, problem: str
) -> None:
    path = _with_pool(tmp_path, pool_yaml)
    with pytest.raises(TopologyError) as raised:
        load_topology(path)
    assert f"{path}: {problem}" in str(raised.value)


def test_exports_use_the_pool_target_and_cooldowns() -> None:
    topology = load_topology(SCALING)
    template = cloudformation_template(topology)
    (policy,) = [
        r["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"
    ]
    assert policy["TargetValue"] == 20
    assert (policy["ScaleOutCooldown"], policy["ScaleInCooldown"]) == (1, 4)
    (scaled,) = [m for m in kubernetes_manifests(topology) if m["kind"] == "ScaledObject"]
    assert [t["metadata"]["queueLength"] for t in scaled["spec"]["triggers"]] == ["20"]
    assert (scaled["spec"]["pollingInterval"], scaled["spec"]["cooldownPeriod"]) == (1, 4)
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 4


def test_desired_store_merges_and_reports_what_was_before(tmp_path: Path) -> None:
    topology = load_topology(SCALING, environment="unit")
    state = state_dir_for(topology, tmp_path)
    assert state == tmp_path / "sc-unit"
    store = DesiredStore(state)
    assert store.update({"main": 3}) == {}
    assert store.update({"other": 1}) == {"main": 3}
    assert store.read() == {"main": 3, "other": 1}
    assert read_status(state) is None  # no supervisor ever ran here


def test_restart_backoff_doubles_up_to_its_cap() -> None:
    backoff = RestartBackoff(base_s=0.5, max_s=4)
    assert [backoff.delay_s(n) for n in range(1, 6)] == [0.5, 1, 2, 4, 4]


def test_one_supervisor_per_state_directory(tmp_path: Path) -> None:
    topology = load_topology(SCALING, environment="unit")
    first = Supervisor(topology, state_dir_for(topology, tmp_path))
    first.acquire()
    try:
        with pytest.raises(ScalingError) as raised:
            Supervisor(topology, state_dir_for(topology, tmp_path)).acquire()
        assert str(raised.value).startswith("a supervisor is already running for sc-unit")
    finally:
        first.shutdown()  # releases the lock
    Supervisor(topology, state_dir_for(topology, tmp_path)).acquire()
