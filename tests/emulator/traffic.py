"""Concurrent SQS traffic against an emulator endpoint, counting lost and duplicated messages."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.aws.lookup import queue_depth
from tests.support.emulator import sqs_client


@dataclass
class TrafficResult:
    """What the consumers saw of ``sent`` unique message bodies."""

    sent: int
    received: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    timed_out: bool = False

    @property
    def lost(self) -> int:
        """Bodies sent and never received."""
        return self.sent - len(self.received)

    @property
    def duplicated(self) -> int:
        """Bodies received more than once (none may be: they were deleted after the first)."""
        return sum(1 for count in self.received.values() if count > 1)

    def summary(self) -> str:
        """One line for assertion messages and reports."""
        return (
            f"{self.lost} lost, {self.duplicated} duplicated of {self.sent:,}; "
            f"{len(self.errors)} errors{' (deadline hit)' if self.timed_out else ''}"
            + (f"; first: {self.errors[0]}" if self.errors else "")
        )


def run_concurrent_traffic(
    endpoint_url: str,
    *,
    messages: int,
    backlog: int = 0,
    producers: int = 4,
    consumers: int = 4,
    deadline_s: float = 120.0,
) -> TrafficResult:
    """``producers`` threads SendMessageBatch ``messages`` unique bodies in all while
    ``consumers`` threads ReceiveMessage(10)/DeleteMessageBatch them, on a fresh queue.

    The first ``backlog`` bodies are sent before any thread starts: moto's races
    (a delete rebuilding the message list, a receive scanning it) have windows
    that grow with the queue's depth, so a backlog makes an unfixed moto show them.

    Consumers stop when every body has been received, or when all sends are done
    and a receive comes back empty with no message left visible (what never
    arrived by then was lost), or at the deadline. The visibility timeout is far
    longer than the run, so a body received twice is a double delivery, not a
    legitimate redelivery.
    """
    admin = sqs_client(endpoint_url)
    queue_url = admin.create_queue(
        QueueName=f"traffic-{uuid.uuid4().hex[:12]}",
        Attributes={"VisibilityTimeout": "3600", "ReceiveMessageWaitTimeSeconds": "0"},
    )["QueueUrl"]
    result = TrafficResult(sent=messages)
    lock = threading.Lock()
    sends_done = threading.Event()
    all_received = threading.Event()
    deadline = time.monotonic() + deadline_s
    # Clients are built here: boto3's client construction is not thread-safe.
    producer_clients = [sqs_client(endpoint_url) for _ in range(producers)]
    consumer_clients = [sqs_client(endpoint_url) for _ in range(consumers)]

    def record_error(where: str, exc: BaseException) -> None:
        with lock:
            result.errors.append(f"{where}: {exc!r}")

    def produce(bodies: list[str], client: Any) -> None:
        for start in range(0, len(bodies), 10):
            batch = bodies[start : start + 10]
            if time.monotonic() > deadline:
                result.timed_out = True
                return
            try:
                response = client.send_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)],
                )
            except Exception as exc:
                record_error("SendMessageBatch", exc)
                continue
            for failure in response.get("Failed", []):
                record_error("SendMessageBatch entry", RuntimeError(str(failure)))

    def consume(client: Any) -> None:
        while not all_received.is_set():
            if time.monotonic() > deadline:
                result.timed_out = True
                return
            try:
                response = client.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
            except Exception as exc:
                record_error("ReceiveMessage", exc)
                continue
            received = response.get("Messages", [])
            if not received:
                if sends_done.is_set() and _nothing_visible(client, queue_url, record_error):
                    return
                continue
            with lock:
                result.received.update(message["Body"] for message in received)
                if len(result.received) >= messages:
                    all_received.set()
            try:
                deleted = client.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": message["ReceiptHandle"]}
                        for i, message in enumerate(received)
                    ],
                )
            except Exception as exc:
                record_error("DeleteMessageBatch", exc)
                continue
            for failure in deleted.get("Failed", []):
                record_error("DeleteMessageBatch entry", RuntimeError(str(failure)))

    bodies = [f"m-{number}" for number in range(messages)]
    produce(bodies[:backlog], admin)
    producer_threads = [
        threading.Thread(target=produce, args=(bodies[backlog + index :: producers], client))
        for index, client in enumerate(producer_clients)
    ]
    consumer_threads = [threading.Thread(target=consume, args=(c,)) for c in consumer_clients]
    for thread in consumer_threads + producer_threads:
        thread.start()
    for thread in producer_threads:
        thread.join()
    sends_done.set()
    for thread in consumer_threads:
        thread.join()
    admin.delete_queue(QueueUrl=queue_url)
    return result


def _nothing_visible(
    client: Any, queue_url: str, record_error: Callable[[str, BaseException], None]
) -> bool:
    try:
        found = queue_depth(client, queue_url)
    except Exception as exc:
        record_error("GetQueueAttributes", exc)
        return False
    return found.visible == 0 and found.delayed == 0
