"""The cost fixes, shown by counting work rather than timing it.

Each measurement counts how often moto does a per-message thing (check a
message's visibility or delay, read the clock through datetime, compare a
receipt handle) during ONE request, at a shallow and a deep queue. With the
fixes, the deep count exceeds the shallow one by at most a small constant; as
shipped, it grows with the depth. The same measurements run against moto as
shipped in ``test_moto_as_shipped_*``, so the suite keeps proving that each test
can fail (they are deterministic: no threads, no clocks).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from moto.core import utils as moto_utils
from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.sqs.models import Message, SQSBackend

from infra.emulator import fixes

SHALLOW = 10
DEEP = 2_000
SLACK = 10  # constant per-request work allowed on top; far below DEEP - SHALLOW


class Counter:
    """How many times something ran."""

    def __init__(self) -> None:
        self.calls = 0


@contextmanager
def counting_property(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> Iterator[Counter]:
    """Count evaluations of the property ``owner.name`` inside the block."""
    counter = Counter()
    prop = vars(owner)[name]

    def counted(self: Any) -> Any:
        counter.calls += 1
        return prop.fget(self)

    with monkeypatch.context() as patch:
        patch.setattr(owner, name, property(counted))
        yield counter


@contextmanager
def counting_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> Iterator[Counter]:
    """Count calls of the function ``owner.name`` inside the block."""
    counter = Counter()
    function = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        counter.calls += 1
        return function(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(owner, name, counted)
        yield counter


def queue_with_depth(sqs: Any, backend: SQSBackend, depth: int) -> str:
    """A fresh queue holding ``depth`` visible messages; returns its URL.

    Filled through ``Queue.add_message`` directly: sending them would itself
    cost O(depth) per message on moto as shipped.
    """
    name = f"depth-{uuid.uuid4().hex[:10]}"
    url: str = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
    queue = backend.get_queue(name)
    for number in range(depth):
        message = Message(str(uuid.uuid4()), f"backlog-{number}")
        message.mark_sent()
        queue.add_message(message)
    return url


Measurement = Callable[[pytest.MonkeyPatch, Any, SQSBackend, int], int]


def visibility_checks_per_send(
    monkeypatch: pytest.MonkeyPatch, sqs: Any, backend: SQSBackend, depth: int
) -> int:
    """Message visibility/delay checks during one SendMessage."""
    url = queue_with_depth(sqs, backend, depth)
    with (
        counting_property(monkeypatch, Message, "visible") as visible,
        counting_property(monkeypatch, Message, "delayed") as delayed,
    ):
        sqs.send_message(QueueUrl=url, MessageBody="one more")
    return visible.calls + delayed.calls


def visibility_checks_per_receive_beyond_one_scan(
    monkeypatch: pytest.MonkeyPatch, sqs: Any, backend: SQSBackend, depth: int
) -> int:
    """Visibility/delay checks during one ReceiveMessage(10), minus one scan of the queue.

    moto finds visible messages by checking every queued one (``Queue.messages``:
    2 checks per message); a receive is allowed that one scan, not more per message.
    """
    url = queue_with_depth(sqs, backend, depth)
    with (
        counting_property(monkeypatch, Message, "visible") as visible,
        counting_property(monkeypatch, Message, "delayed") as delayed,
    ):
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 10
    return visible.calls + delayed.calls - 2 * depth


def datetime_clock_reads_per_receive(
    monkeypatch: pytest.MonkeyPatch, sqs: Any, backend: SQSBackend, depth: int
) -> int:
    """Calls of moto's datetime-based clock (``utcnow``) during one ReceiveMessage(10)."""
    url = queue_with_depth(sqs, backend, depth)
    with counting_calls(monkeypatch, moto_utils, "utcnow") as utcnow:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return utcnow.calls


def handle_checks_per_delete(
    monkeypatch: pytest.MonkeyPatch, sqs: Any, backend: SQSBackend, depth: int
) -> int:
    """Receipt-handle comparisons during one DeleteMessage of a just-received message."""
    url = queue_with_depth(sqs, backend, depth)
    handle = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    with counting_calls(monkeypatch, Message, "had_receipt_handle") as checks:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
    return checks.calls


MEASUREMENTS: dict[str, tuple[str, Measurement]] = {
    "send": ("cheap_attribute_reads", visibility_checks_per_send),
    "receive": ("cheap_attribute_reads", visibility_checks_per_receive_beyond_one_scan),
    "clock": ("fast_clock", datetime_clock_reads_per_receive),
    "delete": ("find_deletes_among_in_flight", handle_checks_per_delete),
}


@pytest.mark.parametrize("measurement", MEASUREMENTS)
def test_per_request_work_does_not_grow_with_the_backlog(
    measurement: str,
    env_fixes: list[str],
    monkeypatch: pytest.MonkeyPatch,
    sqs: Any,
    backend: SQSBackend,
) -> None:
    fix, measure = MEASUREMENTS[measurement]
    shallow = measure(monkeypatch, sqs, backend, SHALLOW)
    deep = measure(monkeypatch, sqs, backend, DEEP)
    assert deep <= shallow + SLACK, (
        f"{measure.__name__}: {shallow} at depth {SHALLOW}, {deep} at depth {DEEP} "
        f"(fixes applied: {env_fixes}; this is what {fix} fixes)"
    )


@pytest.mark.parametrize("measurement", MEASUREMENTS)
def test_moto_as_shipped_does_grow_with_the_backlog(
    measurement: str, no_fixes: None, monkeypatch: pytest.MonkeyPatch, sqs: Any, backend: SQSBackend
) -> None:
    """The test above fails without the fixes (if this fails, moto changed: re-check the fix)."""
    _, measure = MEASUREMENTS[measurement]
    shallow = measure(monkeypatch, sqs, backend, SHALLOW)
    deep = measure(monkeypatch, sqs, backend, DEEP)
    assert deep > shallow + (DEEP - SHALLOW) // 2, (shallow, deep)


def send_receive_delete(backend: SQSBackend, queue_name: str, messages: int) -> None:
    """``messages`` rounds of send, receive and delete, straight on the backend."""
    for number in range(messages):
        backend.send_message(queue_name, f"m-{number}")
        (received,) = backend.receive_message(queue_name, 1, 0, 600)
        assert received.receipt_handle is not None
        backend.delete_message(queue_name, received.receipt_handle)


def messages_kept_alive(backend: SQSBackend, rounds: int) -> int:
    """Growth of ``Message.instances_tracked`` over ``rounds`` send/receive/delete."""
    backend.create_queue("tracked")
    before = len(Message.instances_tracked)  # type: ignore[attr-defined]
    send_receive_delete(backend, "tracked", rounds)
    return len(Message.instances_tracked) - before  # type: ignore[attr-defined]


def test_deleted_messages_are_not_kept_alive(env_fixes: list[str], backend: SQSBackend) -> None:
    # stop_tracking_messages: moto kept each message and each received copy.
    assert messages_kept_alive(backend, rounds=200) == 0, f"fixes applied: {env_fixes}"


def test_moto_as_shipped_keeps_every_message_alive(no_fixes: None, backend: SQSBackend) -> None:
    assert messages_kept_alive(backend, rounds=200) == 400  # the message and its received copy


def deleted_handles_kept(backend: SQSBackend, monkeypatch: pytest.MonkeyPatch, rounds: int) -> int:
    """Receipt handles the queue holds after ``rounds`` send/receive/delete (limit 50)."""
    monkeypatch.setattr(fixes, "RECENTLY_DELETED_RECEIPTS_PER_QUEUE", 50)
    queue = backend.create_queue("receipts")
    send_receive_delete(backend, "receipts", rounds)
    return len(queue.deleted_messages)


def test_deleted_receipt_handles_are_bounded(
    env_fixes: list[str], backend: SQSBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # forget_old_deleted_receipts: moto kept every deleted handle forever.
    assert deleted_handles_kept(backend, monkeypatch, rounds=300) <= 50, f"fixes: {env_fixes}"


def test_moto_as_shipped_keeps_every_deleted_receipt_handle(
    no_fixes: None, backend: SQSBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 300 handles, plus the None moto records as a message's handle before its first receive.
    assert deleted_handles_kept(backend, monkeypatch, rounds=300) == 301


def test_a_recently_deleted_handle_can_still_be_deleted_but_an_old_one_cannot(
    backend: SQSBackend, monkeypatch: pytest.MonkeyPatch, no_fixes: None
) -> None:
    fixes.apply_fixes(["forget_old_deleted_receipts"])
    monkeypatch.setattr(fixes, "RECENTLY_DELETED_RECEIPTS_PER_QUEUE", 4)
    backend.create_queue("again")
    handles = []
    for number in range(6):  # 6 handles (and moto's None) through a window of 4
        backend.send_message("again", f"m-{number}")
        (received,) = backend.receive_message("again", 1, 0, 600)
        assert received.receipt_handle is not None
        backend.delete_message("again", received.receipt_handle)
        handles.append(received.receipt_handle)
    backend.delete_message("again", handles[-1])  # deleted twice: fine, as on AWS
    with pytest.raises(ReceiptHandleIsInvalid):
        backend.delete_message("again", handles[0])  # forgotten: like an expired handle
