"""Refill on slot free: buffered messages reach the pool without a timer and without a receive.

The channel's event loop here is kombu's real Hub, not running: its ``call_soon``
and ``call_later`` are recorded, and the tests run only what would run in the
current turn of the loop (zero-delay timers and ready callbacks), never a timer
with a delay. A message handed over that way did not wait for the busy recheck.
No timing is asserted: only which callbacks are scheduled and how many
ReceiveMessage calls were made.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kombu.asynchronous import Hub, set_event_loop

from tests.unit.test_celery_compat import (
    QNAME,
    binding,
    consume,
    open_channel,
    receive,
    send_jobs,
    sqs,
)
from workers.transport import BUSY_RECHECK_S, RECEIVE_BATCH, Channel

__all__ = ["binding", "sqs"]  # fixtures


class _Entry:
    """What kombu's timer returns: something with cancel()."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@pytest.fixture
def hub() -> Iterator[Any]:
    loop = Hub()
    loop.scheduled = []
    loop.call_soon = lambda fn, *args: loop.scheduled.append(("soon", fn, args, None))

    def call_later(delay: float, fn: Any, *args: Any) -> _Entry:
        entry = _Entry()
        loop.scheduled.append((delay, fn, args, entry))
        return entry

    loop.call_later = call_later
    set_event_loop(loop)
    yield loop
    set_event_loop(None)
    loop.close()


@pytest.fixture
def channel(binding: Any, hub: Any) -> Iterator[Channel]:
    channel = open_channel(binding)
    assert channel.hub is hub
    yield channel
    channel.close()


def run_this_turn(hub: Any) -> int:
    """Run what the loop runs before it polls again: ready callbacks, zero-delay timers."""
    ran = 0
    while True:
        now = [s for s in hub.scheduled if s[0] in ("soon", 0) and not _cancelled(s)]
        if not now:
            return ran
        for item in now:
            hub.scheduled.remove(item)
            item[1](*item[2])
            ran += 1


def _cancelled(item: Any) -> bool:
    return item[3] is not None and item[3].cancelled


@pytest.fixture
def receives(channel: Channel, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ReceiveMessage calls the channel starts (their callbacks), counted."""
    calls: list[Any] = []
    monkeypatch.setattr(
        channel.asynsqs(queue=QNAME),
        "receive_message",
        lambda *args, callback, **kwargs: calls.append(callback),
    )
    return calls


def test_each_ack_hands_the_next_buffered_message_in_the_same_turn(
    sqs: Any, binding: Any, channel: Channel, receives: list[Any]
) -> None:
    delivered = consume(channel, prefetch_count=1)
    channel.hub.scheduled.clear()  # basic_consume started the receive loop
    send_jobs(sqs, binding.url, RECEIVE_BATCH)
    channel._on_messages_ready(binding.url, QNAME, receive(sqs, binding.url))
    assert len(delivered) == 1
    for n in range(1, RECEIVE_BATCH):
        channel.basic_ack(delivered[-1].delivery_tag)
        # A zero-delay timer (this turn), not a call_soon that waits for the poll.
        assert [s[:2] for s in channel.hub.scheduled] == [(0, channel._refill)]
        run_this_turn(channel.hub)
        assert len(delivered) == n + 1
    assert [m.headers["id"] for m in delivered] == [f"job-{i}" for i in range(RECEIVE_BATCH)]
    assert receives == []  # all from the buffer: no ReceiveMessage


def test_many_acks_in_one_turn_schedule_one_refill(
    sqs: Any, binding: Any, channel: Channel
) -> None:
    delivered = consume(channel, prefetch_count=3)
    channel.hub.scheduled.clear()  # basic_consume started the receive loop
    send_jobs(sqs, binding.url, 6)
    channel._on_messages_ready(binding.url, QNAME, receive(sqs, binding.url))
    assert len(delivered) == 3
    for message in delivered:
        channel.basic_ack(message.delivery_tag)
    assert [s[:2] for s in channel.hub.scheduled] == [(0, channel._refill)]
    run_this_turn(channel.hub)
    assert len(delivered) == 6


def test_an_ack_from_another_thread_wakes_the_loop_with_call_soon(
    sqs: Any, binding: Any, channel: Channel
) -> None:
    delivered = consume(channel, prefetch_count=1)
    channel.hub.scheduled.clear()  # basic_consume started the receive loop
    send_jobs(sqs, binding.url, 2)
    channel._on_messages_ready(binding.url, QNAME, receive(sqs, binding.url))
    worker = threading.Thread(target=channel.basic_ack, args=(delivered[0].delivery_tag,))
    worker.start()
    worker.join()
    # kombu's timers are not thread-safe; call_soon from another thread wakes the loop.
    assert [s[:2] for s in channel.hub.scheduled] == [("soon", channel._refill)]
    run_this_turn(channel.hub)
    assert len(delivered) == 2


def test_a_parked_receive_loop_is_woken_when_the_buffer_runs_low(
    sqs: Any, binding: Any, channel: Channel, receives: list[Any]
) -> None:
    delivered = consume(channel, prefetch_count=1)
    channel.hub.scheduled.clear()  # basic_consume started the receive loop
    send_jobs(sqs, binding.url, RECEIVE_BATCH + 2)
    channel._on_messages_ready(binding.url, QNAME, receive(sqs, binding.url))
    channel._on_messages_ready(binding.url, QNAME, receive(sqs, binding.url))
    assert len(channel._waiting) == RECEIVE_BATCH + 1  # one more than the low-water mark
    channel._schedule_queue(QNAME)  # every slot busy, buffer above the mark: parked
    [(delay, _, _, recheck)] = channel.hub.scheduled
    assert delay == BUSY_RECHECK_S
    assert receives == []

    channel.basic_ack(delivered[-1].delivery_tag)
    run_this_turn(channel.hub)  # the recheck timer is not run
    assert len(delivered) == 2
    assert len(receives) == 1  # the receive started at once ...
    assert recheck.cancelled  # ... and the recheck will not start a second one


def test_the_event_loop_always_has_a_socket_to_poll(binding: Any, hub: Any) -> None:
    # With no socket registered kombu's loop sleeps until its next timer and a
    # call_soon from a pool thread cannot wake it; the channel's idle pipe prevents that.
    channel = open_channel(binding)
    assert channel._idle_pipe is not None
    assert channel._idle_pipe[0] in hub.readers
    channel.close()
    assert channel._idle_pipe is None
    assert not hub.readers
