"""The ``local`` backend: desired replicas in the state directory, nodes run by the supervisor."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from infra.topology import Topology
from ops.scaling.model import NodeInfo, PoolState
from ops.scaling.store import DesiredStore, read_status, state_dir_for

#: A node's /metrics must answer within this, or its job counts are shown as unknown.
SCRAPE_TIMEOUT_S = 1.0


class LocalBackend:
    """Worker nodes on this machine, supervised by ``conveyor workers up`` or ``conveyor up``."""

    name = "local"

    def __init__(
        self, topology: Topology, *, state_dir: Path | None = None, with_jobs: bool = True
    ) -> None:
        self.topology = topology
        self.state_dir = state_dir or state_dir_for(topology)
        self.store = DesiredStore(self.state_dir)
        self.with_jobs = with_jobs

    def set_desired(self, desired: Mapping[str, int]) -> None:
        """Store the new desired replicas; the supervisor applies them within a second."""
        self.store.update(desired)

    def pools(self, pools: list[str] | None = None) -> dict[str, PoolState]:
        """Desired replicas from the store; nodes from the supervisor's status."""
        stored = self.store.read()
        status = read_status(self.state_dir)
        alive = status is not None and status.alive()
        note = (
            None
            if alive
            else (
                f"no supervisor is running for {self.state_dir.name}"
                " (start one: conveyor workers up, or conveyor up)"
            )
        )
        found: dict[str, PoolState] = {}
        for pool in pools or list(self.topology.pools):
            desired = stored.get(pool, self.topology.pools[pool].replicas.min)
            reported: dict[str, Any] = (status.pools.get(pool) or {}) if status and alive else {}
            nodes = [
                self._node(n, status.host if status else None) for n in reported.get("nodes", [])
            ]
            found[pool] = PoolState(
                pool,
                desired=desired,
                running=sum(1 for n in nodes if n.state == "running"),
                nodes=nodes,
                restarts=reported.get("restarts") if alive else None,
                note=note,
            )
        return found

    def _node(self, raw: dict[str, Any], host: str | None) -> NodeInfo:
        succeeded = failed = None
        if self.with_jobs and raw.get("health_port"):
            counts = scrape_job_counts(f"http://127.0.0.1:{raw['health_port']}/metrics")
            if counts is not None:
                succeeded, failed = counts
        return NodeInfo(
            id=str(raw["id"]),
            state=str(raw.get("state", "running")),
            host=host,
            pid=int(raw["pid"]),
            started_at=float(raw["started_at"]),
            jobs_succeeded=succeeded,
            jobs_failed=failed,
        )


#: The node counters the console and ``workers ls`` read, by metric family name.
JOB_COUNTERS = ("conveyor_jobs_succeeded", "conveyor_jobs_failed", "conveyor_jobs_dead_lettered")


def scrape_job_counts_by_queue(url: str) -> dict[str, dict[str, int]] | None:
    """Per queue, a node's job counters since it started (``{queue: {family: n}}``, the
    families of :data:`JOB_COUNTERS`) from its Prometheus page; None if unreachable."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    try:
        response = httpx.get(url, timeout=SCRAPE_TIMEOUT_S)
    except httpx.HTTPError:
        return None  # still starting, or gone: the count is unknown, not zero
    if response.status_code != 200:
        return None
    found: dict[str, dict[str, int]] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name not in JOB_COUNTERS:
            continue
        for sample in family.samples:
            if sample.name == f"{family.name}_total":
                queue = sample.labels.get("queue", "")
                counts = found.setdefault(queue, dict.fromkeys(JOB_COUNTERS, 0))
                counts[family.name] += int(sample.value)
    return found


def scrape_job_counts(url: str) -> tuple[int, int] | None:
    """(succeeded, failed) job attempts from a node's Prometheus page; None if unreachable."""
    by_queue = scrape_job_counts_by_queue(url)
    if by_queue is None:
        return None
    return (
        sum(c["conveyor_jobs_succeeded"] for c in by_queue.values()),
        sum(c["conveyor_jobs_failed"] for c in by_queue.values()),
    )


def metrics_urls(state_dir: Path) -> dict[str, str]:
    """The /metrics URL of every node the local supervisor of ``state_dir`` runs, by node id."""
    status = read_status(state_dir)
    if status is None or not status.alive():
        return {}
    return {
        str(node["id"]): f"http://127.0.0.1:{node['health_port']}/metrics"
        for pool in status.pools.values()
        if isinstance(pool, dict)
        for node in pool.get("nodes", [])
        if isinstance(node, dict) and node.get("health_port") and node.get("id")
    }
