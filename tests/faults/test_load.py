"""A load run: thousands of jobs across every pool of the fault topology, two or more
nodes per pool, no fault injected. Zero lost; the line gives the rates this machine held."""

from __future__ import annotations

import time

from tests.faults.harness import Cluster, size
from tests.faults.test_kill9 import mixed_jobs


def test_load_across_all_pools_loses_no_job(cluster: Cluster) -> None:
    jobs = size(500, 5000)
    per_pool = size(2, 3)
    for pool in cluster.topology.pools:
        cluster.nodes(pool, per_pool)
    envelopes = mixed_jobs(jobs)
    started = time.monotonic()
    accepted = cluster.publish(envelopes)
    published_s = time.monotonic() - started
    tally = cluster.settle(
        "load run",
        accepted,
        timeout_s=size(180, 900),
        started=started,
        report=False,
        pools=len(cluster.topology.pools),
        nodes=per_pool * len(cluster.topology.pools),
        publish_per_s=round(len(accepted) / published_s),
    )
    tally.extra["jobs_per_s"] = round(len(accepted) / tally.extra["seconds"], 1)
    tally.report()
    assert tally.lost == []
    assert tally.dead_lettered == len(accepted) // 10  # the permanent ones, and only those
