"""The delete/visibility batcher: batches of 10, flush on demand, failed entries handled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.aws.lookup import queue_depth
from tests.support.polling import eventually
from workers.batching import SqsBatcher


class CountingClient:
    """A real (moto) SQS client that records which batch calls were made."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, int]] = []

    def delete_message_batch(self, **kwargs: Any) -> Any:
        self.calls.append(("delete", len(kwargs["Entries"])))
        return self.client.delete_message_batch(**kwargs)

    def change_message_visibility_batch(self, **kwargs: Any) -> Any:
        self.calls.append(("visibility", len(kwargs["Entries"])))
        return self.client.change_message_visibility_batch(**kwargs)


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def received(sqs: Any, url: str, count: int) -> list[str]:
    for i in range(0, count, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(j), "MessageBody": f"m{i + j}"} for j in range(min(10, count - i))],
        )
    handles: list[str] = []
    while len(handles) < count:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)
        handles += [m["ReceiptHandle"] for m in got.get("Messages", [])]
    return handles


def test_deletes_go_in_full_batches_and_the_rest_on_flush(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    client = CountingClient(sqs)
    batcher = SqsBatcher(lambda _: client, max_delay_s=3600)
    for handle in received(sqs, url, 25):
        batcher.delete(url, handle)
    assert client.calls == [("delete", 10), ("delete", 10)]  # full batches went at once
    assert batcher.pending() == 5
    batcher.flush()
    assert client.calls[-1] == ("delete", 5)
    assert queue_depth(sqs, url).total == 0


def test_flush_due_sends_only_what_waited_long_enough(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    client = CountingClient(sqs)
    batcher = SqsBatcher(lambda _: client, max_delay_s=3600)
    [handle] = received(sqs, url, 1)
    batcher.change_visibility(url, handle, 0)
    batcher.flush_due()
    assert client.calls == []
    batcher.max_delay_s = 0
    batcher.flush_due()
    assert client.calls == [("visibility", 1)]
    assert sqs.receive_message(QueueUrl=url).get("Messages")  # visible again


def test_an_invalid_receipt_handle_is_dropped_and_the_others_deleted(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    client = CountingClient(sqs)
    batcher = SqsBatcher(lambda _: client)
    handles = received(sqs, url, 3)
    batcher.delete(url, "not-a-receipt-handle")
    for handle in handles:
        batcher.delete(url, handle)
    batcher.flush()
    assert batcher.pending() == 0
    assert queue_depth(sqs, url).total == 0


def test_a_failing_call_is_retried_then_given_up(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    client = CountingClient(sqs)
    batcher = SqsBatcher(lambda _: client)
    [handle] = received(sqs, url, 1)
    sqs.delete_queue(QueueUrl=url)  # every DeleteMessageBatch now fails
    batcher.delete(url, handle)
    batcher.flush()
    # Tried MAX_TRIES times, then logged and dropped (had the queue existed, SQS
    # would have delivered the message again: never lost, at worst run twice).
    assert client.calls == [("delete", 1)] * 3
    assert batcher.pending() == 0


def test_the_sending_thread_sends_full_batches_and_stop_leaves_the_rest_to_flush(
    sqs: Any,
) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    client = CountingClient(sqs)
    batcher = SqsBatcher(lambda _: client, max_delay_s=3600)
    batcher.start_sender()
    try:
        for handle in received(sqs, url, 23):
            batcher.delete(url, handle)  # returns at once: the thread sends
        eventually(lambda: batcher.pending() == 3, what="the two full batches to be sent")
    finally:
        batcher.stop_sender()
    assert client.calls == [("delete", 10), ("delete", 10)]
    batcher.flush()
    assert client.calls[-1] == ("delete", 3)
    assert queue_depth(sqs, url).total == 0
