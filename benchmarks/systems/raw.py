"""Driver for the floor: SNS PublishBatch in, ReceiveMessage(10) / DeleteMessageBatch out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3

from benchmarks.procs import Proc, counted, spawn
from benchmarks.systems.common import RunContext, create_queue
from infra.aws.lookup import queue_arn

NAME = "raw"


def setup(run: RunContext) -> dict[str, Any]:
    """A topic and a queue subscribed to it with raw delivery (Conveyor's path, minus Conveyor)."""
    url = create_queue(f"{run.prefix}-raw")
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    arn = queue_arn(sqs, url)
    topic = sns.create_topic(Name=f"{run.prefix}-raw")["TopicArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return {"queue_url": url, "topic_arn": topic}


def start(run: RunContext, config: dict[str, Any]) -> list[Proc]:
    """``run.concurrency`` consumer processes (the same concurrency as the other systems)."""
    return [
        spawn(
            f"{NAME}-worker-{i}",
            counted("worker", "benchmarks.systems.raw_worker", config["queue_url"]),
            run.env,
            run.log_dir,
        )
        for i in range(run.concurrency)
    ]


def producer_env(run: RunContext, config: dict[str, Any]) -> dict[str, str]:
    """What the producer process needs in its environment."""
    return dict(run.env)


def enqueuer(config: dict[str, Any]) -> tuple[int, Callable[[list[dict[str, Any]]], None]]:
    """(jobs per call, enqueue function): one PublishBatch per 10 jobs."""
    sns = boto3.client("sns")

    def enqueue(bodies: list[dict[str, Any]]) -> None:
        response = sns.publish_batch(
            TopicArn=config["topic_arn"],
            PublishBatchRequestEntries=[
                {"Id": str(i), "Message": json.dumps(body)} for i, body in enumerate(bodies)
            ],
        )
        if response.get("Failed"):
            raise RuntimeError(f"PublishBatch failed: {response['Failed']}")

    return 10, enqueue
