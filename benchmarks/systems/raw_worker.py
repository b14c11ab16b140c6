"""The floor: a plain boto3 consumer — ReceiveMessage(10, 20 s long poll), run, DeleteMessageBatch.

``python -m benchmarks.systems.raw_worker QUEUE_URL``. SIGTERM stops it after the
batch in hand (at once when it is waiting in a long poll: nothing is held then).
"""

from __future__ import annotations

import json
import signal
import sys
from types import FrameType

import boto3

from benchmarks import jobs

_state = {"receiving": False, "stopping": False}


def _on_term(signum: int, frame: FrameType | None) -> None:
    _state["stopping"] = True
    if _state["receiving"]:
        raise SystemExit(0)  # interrupts the long poll; nothing is held during it


def main(queue_url: str) -> None:
    """Consume ``queue_url`` until SIGTERM."""
    signal.signal(signal.SIGTERM, _on_term)
    sqs = boto3.client("sqs")
    while not _state["stopping"]:
        _state["receiving"] = True
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=20
        ).get("Messages", [])
        _state["receiving"] = False
        for message in messages:
            body = json.loads(message["Body"])
            jobs.run(body["enqueued_at"], body["cpu_ms"], body.get("io_ms", 0.0))
        if messages:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )


if __name__ == "__main__":
    main(sys.argv[1])
