"""Scale-in under load: SIGTERM to nodes while their jobs run. Each stopping node finishes
the jobs in hand, releases the rest and exits 0; the remaining nodes run everything else;
no job is lost and none runs twice.

Plain `conveyor worker` processes, stopped the way a supervisor, ECS or Kubernetes stops
one (SIGTERM to the main process), so this does not depend on any scaling backend.
"""

from __future__ import annotations

import functools
import itertools
import os
import time

from infra.envelope import make_envelope
from tests.faults.harness import Cluster, size
from tests.support.polling import eventually


def test_sigterm_scale_in_under_load_loses_and_repeats_nothing(cluster: Cluster) -> None:
    jobs = size(200, 2000)
    per_pool = size(3, 4)
    # Long enough that every stopping node has jobs in hand when its signal arrives.
    kinds = itertools.cycle([("fault.work", 0.2), ("fault.slow", 0.2)])
    envelopes = [make_envelope(t, {"seconds": s}) for t, s in itertools.islice(kinds, jobs)]
    nodes = cluster.start({"a": per_pool, "b": per_pool})
    started = time.monotonic()
    accepted = cluster.publish(envelopes)
    eventually(
        lambda: len(os.listdir(cluster.outbox)) >= len(accepted) // 4,
        what="a quarter of the jobs to start",
        timeout_s=120,
    )
    # Scale in to one node per pool, one signal after the other, as a supervisor would.
    stopping = [n for pool in ("a", "b") for n in nodes[pool][1:]]
    for node in stopping:
        node.terminate()
    codes = {n.name: n.proc.wait(timeout=90) for n in stopping}
    tally = cluster.settle(
        "scale-in with SIGTERM under load",
        accepted,
        timeout_s=size(180, 600),
        started=started,
        stopped=len(stopping),
        nodes=2 * per_pool,
    )
    assert codes == dict.fromkeys(codes, 0), codes  # drained, not forced
    assert tally.lost == []
    assert tally.duplicates == 0
    assert all(nodes[pool][0].alive for pool in ("a", "b"))


def test_sigterm_while_jobs_are_handed_out_runs_each_job_once(cluster: Cluster) -> None:
    """Jobs that take no time keep each node's event loop handing messages to its pool,
    so a SIGTERM may land while one is on its way to a pool process (written, its start
    not yet reported). That job must run once: finished and deleted by the stopping node,
    or released unstarted and run by another one, never both. Two waves of three stopped
    nodes each, for more chances to hit that window."""
    jobs = size(900, 3000)
    keeper, *stopping = cluster.nodes("a", 4)
    accepted = cluster.publish(make_envelope("fault.note", {"label": "x"}) for _ in range(jobs))
    codes: dict[str, int] = {}
    for wave in (1, 2):
        eventually(
            functools.partial(_ran_at_least, cluster, len(accepted) * wave // 4),
            what=f"{wave} quarter(s) of the jobs to run",
            timeout_s=120,
        )
        for node in stopping:
            node.terminate()
        codes |= {n.name: n.proc.wait(timeout=90) for n in stopping}
        if wave == 1:
            stopping = cluster.nodes("a", 3)
    tally = cluster.settle(
        "SIGTERM while jobs are handed out",
        accepted,
        timeout_s=size(180, 600),
        stopped=len(codes),
        nodes=len(codes) + 1,
    )
    assert codes == dict.fromkeys(codes, 0), codes  # drained, not forced
    assert tally.lost == []
    assert tally.duplicates == 0
    assert keeper.alive


def _ran_at_least(cluster: Cluster, count: int) -> bool:
    return len(os.listdir(cluster.outbox)) >= count
