"""What every system driver gets from the benchmark run, and shared set-up helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import boto3

from infra.aws.lookup import queue_arn

#: Same attributes as Conveyor's provisioned queue (benchmarks/queues.yaml): a 30 s
#: visibility timeout, a DLQ after 4 receives (3 attempts + 1), a 20 s receive wait.
VISIBILITY_TIMEOUT_S = 30
MAX_RECEIVE_COUNT = 4


@dataclass
class RunContext:
    """One system's slice of a benchmark run."""

    endpoint_url: str
    port: int
    #: Resource name prefix, unique per run and system.
    prefix: str
    #: Environment for every child process (AWS settings, PYTHONPATH, counts/records dirs).
    env: dict[str, str]
    log_dir: Path
    records_dir: Path
    counts_dir: Path
    concurrency: int
    #: Conveyor's execution pool for this run (``worker_pool`` in queues.yaml).
    worker_pool: str = "prefork"


def create_queue(name: str) -> str:
    """Create ``name`` and its DLQ with Conveyor's queue attributes; the queue URL."""
    client = boto3.client("sqs")
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = queue_arn(client, dlq_url)
    url: str = client.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
            "ReceiveMessageWaitTimeSeconds": "20",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
            ),
        },
    )["QueueUrl"]
    return url
