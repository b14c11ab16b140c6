"""A closing channel does not give its messages to its own abandoned long poll.

SQS keeps serving a ReceiveMessage whose client has gone (so does the emulator):
a message made visible while such a poll waits is taken for nobody, hidden for a
whole visibility timeout and one receive spent. While the channel's poll may still
wait, what it releases stays hidden until that poll is over; with no poll in
flight it is visible again at once. (The e2e recycling test shows the whole path.)
"""

from __future__ import annotations

from typing import Any

from tests.unit.test_celery_compat import QNAME, consume, counts, receive, send_jobs
from tests.unit.test_dispatch_refill import binding, channel, hub, receives, sqs
from workers.transport import Channel

__all__ = ["binding", "channel", "hub", "receives", "sqs"]  # fixtures


def _buffer_three(sqs: Any, binding: Any, channel: Channel) -> None:
    """One job handed to the pool (unacked), two waiting in the channel's buffer."""
    delivered = consume(channel, prefetch_count=1)
    channel.hub.scheduled.clear()  # basic_consume started the receive loop
    send_jobs(sqs, binding.url, 3)
    channel._on_messages_ready(binding.url, QNAME, receive(sqs, binding.url))
    assert (len(delivered), len(channel._waiting)) == (1, 2)


def test_with_a_poll_in_flight_closing_keeps_the_messages_hidden_until_it_is_over(
    sqs: Any, binding: Any, channel: Channel, receives: list[Any]
) -> None:
    _buffer_three(sqs, binding, channel)
    channel._schedule_queue(QNAME)  # the buffer is low: a long poll starts
    assert len(receives) == 1

    channel.close()  # the node exits with that poll still waiting

    # Released with what the poll has left (plus a margin), not 0: 2 buffered, 1 unacked.
    assert counts(sqs, binding.url) == (0, 3)  # none visible to the abandoned poll


def test_with_no_poll_in_flight_closing_makes_them_visible_at_once(
    sqs: Any, binding: Any, channel: Channel, receives: list[Any]
) -> None:
    _buffer_three(sqs, binding, channel)
    channel._schedule_queue(QNAME)
    (answer,) = receives
    answer({"Messages": []})  # the poll came back (empty) before the node stopped

    channel.close()

    assert counts(sqs, binding.url) == (3, 0)
