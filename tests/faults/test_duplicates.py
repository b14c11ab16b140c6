"""Duplicate deliveries of guarded jobs (``idempotency_guard: true``): the same body sent
again, through SQS and through SNS, and copies that come back from the DLQ by a redrive.
The handler runs once per job; every other delivery is skipped and deleted."""

from __future__ import annotations

import json
import subprocess
import sys

from infra import aws
from infra.envelope import encode
from tests import REPO
from tests.faults.harness import Cluster, notes, size
from tests.support.polling import eventually


def skipped(cluster: Cluster) -> int:
    """``job.skipped_duplicate`` events in every node's log."""
    count = 0
    for proc in cluster.procs:
        count += sum(1 for line in proc.text().splitlines() if '"job.skipped_duplicate"' in line)
    return count


def test_guarded_jobs_run_once_however_often_they_are_delivered(cluster: Cluster) -> None:
    jobs = size(18, 300)
    cluster.nodes("a", 2)
    envelopes = list(notes("fault.once", jobs, "once"))
    by_id = {e.id: e for e in envelopes}
    accepted = cluster.publish(envelopes)
    eventually(
        lambda: all(cluster.ok_runs(i) for i in accepted),
        what="the first delivery of every job to succeed",
        timeout_s=120,
    )
    sqs = aws.client("sqs")
    url = cluster.url("alpha")
    # 1. The same body again, straight into the queue (what an SQS redelivery looks like).
    third = len(accepted) // 3
    for job_id in accepted[:third]:
        sqs.send_message(QueueUrl=url, MessageBody=encode(by_id[job_id]))
    # 2. Published again through SNS (a producer that retried after a lost answer).
    cluster.publish(by_id[i] for i in accepted[third : 2 * third])
    # 3. A copy in the DLQ (the native redrive moved a delivery whose node died) redriven.
    dlq = cluster.dlq_url("alpha")
    for job_id in accepted[2 * third :]:
        sqs.send_message(QueueUrl=dlq, MessageBody=encode(by_id[job_id]))
    redrive = subprocess.run(
        [sys.executable, "-m", "conveyor", "dlq", "redrive", "alpha", "--yes"],
        env=cluster.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert redrive.returncode == 0, redrive.stderr
    duplicates_sent = len(accepted)
    eventually(
        lambda: skipped(cluster) >= duplicates_sent,
        what=f"{duplicates_sent} duplicate deliveries to be skipped",
        timeout_s=120,
    )

    tally = cluster.settle(
        "duplicate deliveries (idempotency guard)",
        accepted,
        deliveries=len(accepted) + duplicates_sent,
        skipped=skipped(cluster),
    )
    assert tally.lost == []
    assert tally.duplicates == 0
    assert tally.dead_lettered == 0
    assert skipped(cluster) == duplicates_sent
    for job_id in accepted[:3]:
        runs = [r for r in cluster.runs(job_id) if r["outcome"] == "ok"]
        assert len(runs) == 1, json.dumps(runs)
