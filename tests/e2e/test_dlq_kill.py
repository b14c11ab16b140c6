"""A redrive killed with SIGKILL half-way loses no job: each is in the DLQ, the source queue, or
both (sent, not yet deleted: a duplicate with the same job id) — never in neither.

The redrive runs as a real `python -m conveyor` process, slowed down with --rate so it
can be killed mid-way; no worker consumes, so every job can be counted afterwards.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import IO, TYPE_CHECKING

import pytest

from infra import aws, provision
from infra.failure import REDRIVE_COUNT
from infra.topology import load_topology
from tests import REPO
from tests.support.queues import dead_letter

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.e2e

QUEUES_FILE = REPO / "tests" / "fixtures" / "dlq.yaml"
JOBS = 30
DEADLINE_S = 60.0
PROGRESS = re.compile(r"^redrive: (\d+)/(\d+) moved")


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def _job_ids(sqs: SQSClient, url: str, into: Counter[str]) -> None:
    """Receive every visible message of ``url`` for good and count it by job id."""
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600, WaitTimeSeconds=0
        ).get("Messages", [])
        if not got:
            return
        for message in got:
            body = json.loads(message["Body"])
            into[body["id"]] += 1
            if url.endswith("-work"):
                assert body[REDRIVE_COUNT] == 1


def test_a_redrive_killed_half_way_leaves_every_job_in_the_dlq_or_the_source_queue(
    aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(QUEUES_FILE))
    topology = load_topology(QUEUES_FILE)
    provision.apply(topology)
    sqs = aws.client("sqs")
    dlq_url = sqs.get_queue_url(QueueName=topology.dlq_name("work"))["QueueUrl"]
    work_url = sqs.get_queue_url(QueueName=topology.queue_name("work"))["QueueUrl"]
    jobs = {dead_letter(sqs, dlq_url, "dlq.fragile", f"k{i}").id for i in range(JOBS)}

    argv = [sys.executable, "-m", "conveyor", "dlq", "redrive", "work", "--yes", "--rate", "5"]
    # A short hold, so the messages the killed process held reappear quickly.
    argv += ["--visibility-timeout", "2s"]
    env = {**aws_env.env, "CONVEYOR_QUEUES_FILE": str(QUEUES_FILE)}
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no progress within {DEADLINE_S:g} s: {seen}")
            seen.append(line)
            match = PROGRESS.match(line)
            if match and int(match.group(1)) >= JOBS // 3:
                proc.kill()  # SIGKILL: no cleanup, no release
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -9, seen

    in_dlq: Counter[str] = Counter()
    in_work: Counter[str] = Counter()
    deadline = time.monotonic() + DEADLINE_S
    while set(in_dlq) | set(in_work) != jobs:
        # Messages the killed process held come back when their 2 s hold expires.
        assert time.monotonic() < deadline, f"missing: {jobs - set(in_dlq) - set(in_work)}"
        _job_ids(sqs, dlq_url, in_dlq)
        _job_ids(sqs, work_url, in_work)
        time.sleep(0.1)  # polling interval, bounded by the deadline

    missing = jobs - set(in_dlq) - set(in_work)
    duplicated = set(in_dlq) & set(in_work)
    print(  # the figures, for the record (pytest -s)
        f"\nkilled after {seen[-1].strip()!r}: {len(in_work)} jobs in the source queue,"
        f" {len(in_dlq)} in the DLQ, {len(duplicated)} in both, {len(missing)} missing"
    )
    assert missing == set()
    assert 0 < len(in_work) < JOBS  # killed half-way, not before or after
    assert set(in_dlq) - set(in_work)  # some never moved
    # Only the batch being moved at the kill can be in both queues.
    assert len(duplicated) <= 10
