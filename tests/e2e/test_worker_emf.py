"""A real worker node with ``CONVEYOR_METRICS=prometheus,emf``: EMF lines from its pool
processes on stdout, and the Prometheus page it served before, unchanged."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import aws
from infra import job_metrics as names
from infra.envelope import encode, make_envelope
from infra.provision import apply
from infra.topology import load_topology
from tests import REPO
from tests.support import http
from tests.support.emf import emf_lines, emf_problems
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from tests.support.processes import Worker, metric

pytestmark = pytest.mark.e2e

PIPELINE = REPO / "tests" / "fixtures" / "pipeline.yaml"


@pytest.fixture
def worker(aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(PIPELINE))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("CONVEYOR_METRICS", "prometheus,emf")
    apply(load_topology(PIPELINE))
    node = Worker("main", env=dict(os.environ), log_dir=tmp_path)
    try:
        node.wait_ready()
        yield node
    finally:
        node.close()


def test_a_prefork_node_writes_emf_lines_and_keeps_its_prometheus_page(worker: Worker) -> None:
    topology = load_topology(PIPELINE)
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=topology.queue_name("work"))["QueueUrl"]
    ok = make_envelope("test.record", {"label": "fine"})
    doomed = make_envelope("test.permanent", {"label": "doomed"})
    for envelope in (ok, doomed):
        sqs.send_message(QueueUrl=url, MessageBody=encode(envelope))

    def both_lines() -> dict[str, dict[str, Any]] | None:
        by_type = {d[names.JOB_TYPE]: d for d in emf_lines(worker.text())}
        return by_type if {"test.record", "test.permanent"} <= set(by_type) else None

    by_type = eventually(both_lines, what="an EMF line for each job in the node's output")
    raw = [line for line in worker.text().splitlines() if '"_aws"' in line]
    assert raw
    for line in raw:
        assert emf_problems(line) == []
    assert (by_type["test.record"][names.SUCCEEDED], by_type["test.record"][names.POOL]) == (
        1,
        "main",
    )
    assert by_type["test.permanent"][names.REASON] == "permanent_error"

    labels = {"job_type": "test.record", "queue": "work"}
    page = eventually(
        lambda: (
            (t := http.get(f"{worker.health_url}/metrics").text)
            and metric(t, "conveyor_jobs_succeeded_total", **labels) == 1
            and t
        ),
        what="the Prometheus counter of the success",
    )
    dead = {"job_type": "test.permanent", "queue": "work", "reason": "permanent_error"}
    assert metric(page, "conveyor_jobs_dead_lettered_total", **dead) == 1
