"""A load run: thousands of jobs through the producer API's batch route (C1), across
every pool of the fault topology with two or more nodes per pool, no fault injected.
Zero lost; the line gives the rates this machine held."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from producers.client import Client
from tests.faults.harness import Cluster, size
from tests.faults.test_kill9 import mixed_jobs

#: Jobs per POST /v1/jobs (the route takes up to 500).
BATCH = 250


def test_load_across_all_pools_loses_no_job(cluster: Cluster) -> None:
    jobs = size(300, 5000)
    per_pool = size(2, 3)
    nodes = [cluster.node(p, wait=False) for p in cluster.topology.pools for _ in range(per_pool)]
    _, url = cluster.api(CONVEYOR_API_AUTH="none")  # starts while the nodes do
    cluster.wait_ready(nodes)
    items: list[dict[str, Any]] = [{"type": e.type, "data": e.data} for e in mixed_jobs(jobs)]
    chunks = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]
    started = time.monotonic()
    with Client(url, timeout_s=60) as client, ThreadPoolExecutor(2) as pool:
        answers = [r for chunk in pool.map(client.enqueue_many, chunks) for r in chunk]
    enqueued_s = time.monotonic() - started
    accepted = [r.id for r in answers if r.accepted and r.id is not None]
    refused = [r for r in answers if not r.accepted]
    tally = cluster.settle(
        "load run (API batch route)",
        accepted,
        timeout_s=size(180, 900),
        started=started,
        report=False,
        pools=len(cluster.topology.pools),
        nodes=per_pool * len(cluster.topology.pools),
        refused=len(refused),
        enqueue_per_s=round(len(accepted) / enqueued_s),
    )
    tally.extra["jobs_per_s"] = round(len(accepted) / tally.extra["seconds"], 1)
    tally.report()
    assert refused == []
    assert tally.lost == []
    assert tally.dead_lettered == len(accepted) // 10  # the permanent ones, and only those
