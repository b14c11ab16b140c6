"""kill -9 of random worker nodes (their whole process groups) while thousands of jobs run:
every accepted job still succeeds or is dead-lettered, none is lost."""

from __future__ import annotations

import functools
import itertools
import os
import random
import time

from infra.envelope import Envelope, make_envelope
from tests.faults.harness import Cluster, size
from tests.support.polling import eventually


def mixed_jobs(count: int) -> list[Envelope]:
    """Short jobs on both queues, with a few flaky (retried) and permanent (DLQ) ones."""
    kinds = itertools.cycle(
        [
            ("fault.work", {"seconds": 0.05}),
            ("fault.slow", {"seconds": 0.05}),
            ("fault.note", {"label": "k"}),
            ("fault.work", {"seconds": 0.05}),
            ("fault.slow", {"seconds": 0.05}),
            ("fault.flaky", {"succeed_on_attempt": 2}),
            ("fault.work", {"seconds": 0.05}),
            ("fault.slow", {"seconds": 0.05}),
            ("fault.note", {"label": "k"}),
            ("fault.permanent", {"label": "doomed"}),
        ]
    )
    return [make_envelope(t, p) for t, p in itertools.islice(kinds, count)]


def ran_at_least(cluster: Cluster, count: int) -> bool:
    """Whether ``count`` jobs have run at least once (one outbox file per job)."""
    return len(os.listdir(cluster.outbox)) >= count


def test_kill_9_of_random_nodes_loses_no_job(cluster: Cluster) -> None:
    jobs = size(300, 3000)
    kills = size(3, 12)
    rng = random.Random(9)  # which node dies, reproducibly
    nodes = [n for pool in cluster.start({"a": 2, "b": 2}).values() for n in pool]
    started = time.monotonic()
    accepted = cluster.publish(mixed_jobs(jobs))
    killed = []
    for k in range(kills):
        # Spread the kills over the run: the k-th once (k+1)/(kills+1) of the jobs ran.
        threshold = len(accepted) * (k + 1) // (kills + 2)
        eventually(
            functools.partial(ran_at_least, cluster, threshold),
            what=f"{threshold} jobs to run before kill {k + 1}",
            timeout_s=180,
        )
        victim = rng.choice([n for n in nodes if n.alive])
        pool = victim.name.removeprefix("node-")[0]
        victim.kill9()
        killed.append(victim.name)
        nodes.remove(victim)
        nodes.append(cluster.node(pool, wait=False))  # the replacement, as an orchestrator would
    tally = cluster.settle(
        "kill -9 of random nodes",
        accepted,
        timeout_s=size(180, 600),
        kills=len(killed),
        nodes=4,
        started=started,
    )
    assert len(killed) == kills
    assert tally.lost == []
    assert tally.dead_lettered == len(accepted) // 10  # exactly the permanent ones
