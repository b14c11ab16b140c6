"""Conveyor's extension of kombu's SQS transport (its private hooks: :mod:`workers.compat`).

What it changes, and why:

* ``_message_to_python`` turns a CloudEvents job (or anything else on the queue)
  into a Celery protocol-2 task message: task = job type, id = job id,
  retries = ApproximateReceiveCount - 1. Anything that is not a job this queue
  handles becomes the ``conveyor.undeliverable`` task, so it is dead-lettered with
  a reason on its first receive instead of looping until the native redrive.
* ``basic_ack`` applies the job's :class:`~workers.runner.Outcome`: delete on
  success; for a retry, change the visibility timeout to the backoff delay (never
  re-publish: that would reset the receive count and defeat dead-lettering); for a
  dead letter, write the original body with the failure record to the DLQ, then
  delete.
* ``basic_reject`` never deletes (kombu 5.7 deletes a rejected message whose queue
  has no RedrivePolicy — the job would be lost), and ``_restore`` makes an unacked
  message visible again instead of publishing a copy of it.
* ``new_sqs_client`` takes boto3 clients from :mod:`infra.aws`, so endpoint, region
  and credentials come from the standard AWS settings, not from the broker URL.
* Receiving asks for 10 messages a call. kombu asks for as many as prefetch
  slots are free (1 per pool process), so a busy node made about one
  ReceiveMessage per job. The channel keeps what the pool cannot take yet in a
  buffer of its own and hands a message to Celery when a slot frees; it receives
  again when the buffer is down to one message per slot. Celery never holds more
  than its prefetch (so its shutdown never has unstarted jobs in its pool's
  queue to cancel: that raced with a job starting, which then ran twice). Buffered
  messages stay invisible through the heartbeat, whose runtime limit starts with
  the job (:func:`job_started`), and are made visible again at once when the
  consumer is cancelled or closed, or as soon as the node is stopping
  (:func:`stop_delivering`: after that no message is handed to Celery).
* A stopping node does not hand its released messages to its own abandoned long
  poll. SQS (and the emulator) keeps serving a ReceiveMessage whose client has gone:
  a message made visible while it waits is received for nobody, so it stays
  invisible for another visibility timeout and gains a receive, an attempt it never
  ran. While such a poll may still be waiting, a release sets the visibility to the
  time the poll has left instead of 0 (see :meth:`Channel._release_timeout_s`).
* A freed slot is refilled in the same turn of the event loop (see
  :meth:`Channel._slot_freed`), and a receive loop parked because every slot was
  busy is woken as soon as the buffer runs low, instead of on its next recheck.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from kombu.transport import SQS, virtual
from vine import promise

from infra import aws
from workers import compat
from workers.batching import SqsBatcher
from workers.dead_letter import dead_letter_request
from workers.heartbeat import Heartbeat, new_lease
from workers.intake import Refusal, read_job
from workers.liveness import LIVENESS
from workers.outcome import Outcome
from workers.runner import receive_count

log = structlog.stdlib.get_logger("conveyor.worker")

# What the channel below calls or reads of kombu's internals (its overrides are
# checked by @compat.overrides).
compat.require(
    "kombu.transport.SQS:Channel._get_bulk_async",
    "kombu.transport.SQS:Channel.hub",
    "kombu.transport.virtual:Channel._active_queues",
    "kombu.transport.virtual:Transport._callbacks",
    "kombu.transport.virtual:QoS.can_consume",
    "kombu.transport.virtual:QoS.get",
    "kombu.transport.virtual:Channel.basic_ack",
    "kombu.transport.SQS:QoS.reject",
)

#: The task that dead-letters whatever is not a job this queue can run.
UNDELIVERABLE_TASK = "conveyor.undeliverable"
#: Where the consumer finds the outcome the pool sent back (see workers.request).
OUTCOME_KEY = "conveyor_outcome"
#: How long to wait before polling again after a receive failed.
RECEIVE_RETRY_S = 2.0
#: What a failed poll reports to the receive loop.
FAILED_POLL = -1
#: How soon a node whose slots are all busy checks again whether it may receive (a
#: backstop: a delivery that leaves the buffer low wakes the receive loop at once).
BUSY_RECHECK_S = 0.05
#: How often the consumer looks for leases to extend.
HEARTBEAT_CHECK_S = 1.0
#: Messages one ReceiveMessage asks for (SQS's maximum), and the free prefetch
#: slots a node waits for before it receives again.
RECEIVE_BATCH = 10
#: Added to what an abandoned long poll has left when a stopping node releases a
#: message: the server's wait started a little after ours did.
ABANDONED_POLL_MARGIN_S = 1
#: System attributes every receive asks for.
SYSTEM_ATTRIBUTES = [
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SentTimestamp",
    "MessageGroupId",
]


@dataclass(frozen=True)
class QueueBinding:
    """What the transport knows of one consumed queue (from transport options)."""

    queue: str  # declared name, e.g. "images"
    url: str
    dlq_url: str
    fifo: bool
    job_types: frozenset[str]
    visibility_timeout_s: int = 30
    #: Per job type: how long the heartbeat may keep a message invisible.
    max_runtime_s: dict[str, float] | None = None

    def to_option(self) -> dict[str, Any]:
        """A JSON-friendly form for Celery's broker_transport_options."""
        return {
            "queue": self.queue,
            "url": self.url,
            "dlq_url": self.dlq_url,
            "fifo": self.fifo,
            "job_types": sorted(self.job_types),
            "visibility_timeout_s": self.visibility_timeout_s,
            "max_runtime_s": dict(self.max_runtime_s or {}),
        }

    @classmethod
    def from_option(cls, value: dict[str, Any]) -> QueueBinding:
        """The inverse of :meth:`to_option`."""
        return cls(
            queue=value["queue"],
            url=value["url"],
            dlq_url=value["dlq_url"],
            fifo=bool(value["fifo"]),
            job_types=frozenset(value["job_types"]),
            visibility_timeout_s=int(value.get("visibility_timeout_s", 30)),
            max_runtime_s=dict(value.get("max_runtime_s") or {}),
        )


def _peek(plain: dict[str, Any]) -> tuple[str | None, str | None]:
    """(id, type) of the job in a message; (None, None) when it is not a job.

    The same reading as the runner's (:func:`workers.intake.read_job`, which never
    raises), so a message that is not a job goes to the undeliverable task and is
    dead-lettered with its reason there; the consumer itself never fails on it.
    """
    read = read_job(plain)
    if isinstance(read, Refusal):
        return None, None
    return read.id, read.type


def _json_safe(attributes: Any) -> dict[str, Any]:
    # Message attributes ride to the pool in the task's JSON; a Binary value (bytes)
    # cannot, and the job never reads it (the DLQ write uses the received message).
    if not isinstance(attributes, dict):
        return {}
    return {
        str(name): {k: v for k, v in value.items() if isinstance(v, str)}
        for name, value in attributes.items()
        if isinstance(value, dict)
    }


def _plain_message(message: Any) -> dict[str, Any]:
    """The parts of a received SQS message the job needs, as plain JSON-able data."""
    return {
        "MessageId": message.get("MessageId"),
        "Body": message.get("Body") or "",
        "Attributes": {str(k): str(v) for k, v in (message.get("Attributes") or {}).items()},
        "MessageAttributes": _json_safe(message.get("MessageAttributes")),
    }


_channels: weakref.WeakSet[Channel] = weakref.WeakSet()
#: Set once the node's shutdown began: see :func:`stop_delivering`.
_delivery_stopped = threading.Event()


def stop_delivering() -> None:
    """From now on no received message is handed to Celery: each is released instead.

    Safe from a signal handler (it only sets a flag). The event loop may still run
    callbacks for a few milliseconds before Celery notices the shutdown; without
    this gate they could start jobs on a node that is stopping.
    """
    _delivery_stopped.set()


def messages_held() -> int:
    """Messages this process has received and not yet deleted or released (in flight)."""
    return sum(channel._heartbeat.held() for channel in list(_channels))


def job_started(message: Any) -> None:
    """The pool started the job of ``message`` (a kombu message): its runtime limit starts."""
    channel = getattr(message, "channel", None)
    if isinstance(channel, Channel):
        channel._heartbeat.start(message.delivery_tag)


def _never_readable() -> None:
    """The event loop's callback for the idle pipe, which is never written to."""


@compat.overrides
class Channel(SQS.Channel):
    """kombu's SQS channel with Conveyor's job mapping and outcome handling."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.transport_options
        self._batcher = SqsBatcher(
            self._client_for_url, max_delay_s=float(options.get("ack_flush_interval_s", 1.0))
        )
        self._heartbeat = Heartbeat(self._client_for_url)
        #: Received messages not yet handed to Celery: (queue name, kombu payload).
        self._waiting: deque[tuple[str, dict[str, Any]]] = deque()
        #: Queue -> the recheck timer of its receive loop, while parked (slots all busy).
        self._parked: dict[str, Any] = {}
        #: The event loop's thread (the one the channel is made in, and where it polls).
        self._loop_thread = threading.get_ident()
        #: A refill is scheduled and has not run yet (one is enough for any number of acks).
        self._refill_pending = False
        #: A pipe registered with the event loop so it keeps polling (:meth:`_keep_polling`).
        self._idle_pipe: tuple[int, int] | None = None
        #: Queue -> when its ReceiveMessage in flight ends at the latest (monotonic).
        self._polls: dict[str, float] = {}
        #: close() has begun: the receive loop will not pick up what is released.
        self._closing = False
        #: The event loop's repeating timers (the heartbeat, unless it has a thread).
        self._timers: list[Any] = []
        _channels.add(self)
        hub = getattr(self, "hub", None)  # kombu's event loop (set by the SQS channel)
        if hub is not None:
            # A consumer: deletes and visibility changes go from the batcher's own
            # thread (a full batch at once, the rest when due, close() sends what is
            # left), so the event loop never waits for them. The loop extends leases,
            # except on solo, whose job blocks the loop while it runs: there a thread
            # of its own does (measured on prefork at concurrency 8, the extra thread
            # was within the benchmark's noise but not clearly free, so only solo).
            self._batcher.start_sender()
            if options.get("heartbeat_thread"):
                self._heartbeat.run_in_background(HEARTBEAT_CHECK_S)
            else:
                self._timers = [hub.call_repeatedly(HEARTBEAT_CHECK_S, self._heartbeat.beat)]
            self._keep_polling(hub)

    def _keep_polling(self, hub: Any) -> None:
        # kombu's event loop polls its sockets only while one is registered; with
        # none (no ReceiveMessage in flight, and no prefork pipes: the threads and
        # solo pools) it sleeps until its next timer instead, and a call_soon from
        # another thread cannot wake it. Celery's threads pool acknowledges each job
        # that way, so every ack waited for the next timer (BUSY_RECHECK_S): about
        # 50 ms per job and slot. A pipe that is never written keeps the loop polling,
        # and so wakeable at once.
        self._idle_pipe = os.pipe()
        hub.add_reader(self._idle_pipe[0], _never_readable)

    def close(self) -> None:
        """Send the buffered deletes and visibility changes, then close as kombu does."""
        self._closing = True
        now = time.monotonic()
        for queue, ends_at in self._polls.items():
            if ends_at > now:
                log.info(
                    "sqs.receive_abandoned",
                    sqs_queue=queue,
                    released_visible_in_s=self._release_timeout_s(queue),
                )
        self._heartbeat.stop_background()
        for timer in [*self._timers, *self._parked.values()]:
            if timer is not None:
                timer.cancel()
        self._timers = []
        self._parked.clear()
        pipe, self._idle_pipe = self._idle_pipe, None
        if pipe is not None:
            hub = getattr(self, "hub", None)
            if hub is not None:
                hub.remove_reader(pipe[0])
            for fd in pipe:
                os.close(fd)
        self._release_waiting()
        self._batcher.stop_sender()
        self._batcher.flush()
        super().close()

    @cached_property
    def bindings(self) -> dict[str, QueueBinding]:
        """Physical queue name → binding, from ``transport_options['conveyor_queues']``."""
        options = self.transport_options.get("conveyor_queues", {})
        return {name: QueueBinding.from_option(value) for name, value in options.items()}

    def new_sqs_client(
        self,
        region: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        session_token: str | None = None,
    ) -> Any:
        """An SQS client from infra.aws (standard AWS settings; broker URL credentials unused)."""
        return aws.new_client("sqs", region=region)

    # -- receiving ------------------------------------------------------------------

    def _message_to_python(self, message: Any, queue_name: str, q_url: str) -> dict[str, Any]:
        binding = self.bindings[queue_name]
        plain = _plain_message(message)
        job_id, job_type = _peek(plain)
        task = job_type if job_type in binding.job_types else UNDELIVERABLE_TASK
        task_id = job_id or plain["MessageId"] or "unknown"
        self._heartbeat.track(
            new_lease(
                q_url,
                message["ReceiptHandle"],
                binding.visibility_timeout_s,
                (binding.max_runtime_s or {}).get(task),
            )
        )
        body = json.dumps(
            [
                [],
                {"message": plain, "queue": binding.queue},
                {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
            ]
        )
        return {
            "body": body,
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "headers": {
                "lang": "py",
                "task": task,
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "group": None,
                "retries": receive_count(plain) - 1,
                "eta": None,
                "expires": None,
                "timelimit": [None, None],
                # What Celery logs for the task: never the payload.
                "argsrepr": "()",
                "kwargsrepr": repr({"queue": binding.queue}),
                "origin": "sqs",
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": None,
                "delivery_mode": 2,
                "priority": 0,
                "body_encoding": None,
                "delivery_tag": message["ReceiptHandle"],
                "delivery_info": {
                    "exchange": "",
                    "routing_key": queue_name,
                    "priority": 0,
                    "sqs_message": message,
                    "sqs_queue": q_url,
                },
            },
        }

    def _on_messages_ready(self, queue: str, qname: str, messages: Any) -> int:
        # kombu's async client answers a failed request (connection refused or reset)
        # with a list instead of the ReceiveMessage response, and kombu then raises
        # AttributeError, which Celery treats as unrecoverable. Count it as a failed
        # poll instead: retried after a pause, and not a sign of life, so an outage
        # that lasts is caught by the liveness watchdog.
        self._polls.pop(qname, None)
        if not isinstance(messages, dict):
            log.warning("sqs.receive_failed", queue=qname)
            return FAILED_POLL
        received = messages.get("Messages") or []
        if not received or self._callback_of(qname) is None:
            # Nothing, or the consumer is gone: kombu's own path releases them.
            return int(super()._on_messages_ready(queue, qname, messages))  # type: ignore[misc]
        for message in received:
            self._waiting.append((qname, self._message_to_python(message, qname, queue)))
        self._deliver_waiting()
        return len(received)

    def _callback_of(self, qname: str) -> Any:
        """Celery's consumer callback for ``qname``; None once it was cancelled."""
        callbacks: Any = self.connection._callbacks
        return callbacks.get(qname) if callbacks else None

    def _deliver_waiting(self) -> None:
        """Hand buffered messages to Celery while it has free prefetch slots."""
        if _delivery_stopped.is_set():  # the node is stopping: never start another job
            self._release_waiting()
            return
        while self._waiting and self.qos.can_consume():
            qname, payload = self._waiting.popleft()
            callback = self._callback_of(qname)
            if callback is None:  # cancelled meanwhile
                self._release(payload)
                continue
            callback(payload)

    def _release(self, payload: dict[str, Any]) -> None:
        info = payload["properties"]["delivery_info"]
        self._heartbeat.forget(payload["properties"]["delivery_tag"])
        self._batcher.change_visibility(
            info["sqs_queue"],
            info["sqs_message"]["ReceiptHandle"],
            self._release_timeout_s(info["routing_key"]),
        )

    def _release_timeout_s(self, queue: str) -> int:
        """The visibility timeout that gives a message of ``queue`` back to the queue.

        0 (at once), unless the node is stopping while a ReceiveMessage on that queue
        is still in flight: its client will not read the answer, yet SQS serves it
        and would take the message for nobody. Then the message stays hidden until
        that poll is over at the latest (at most the long poll's 20 s, plus a margin):
        a delay on shutdown only, and never a receive (an attempt) spent on nobody.
        """
        ends_at = self._polls.get(queue)
        if ends_at is None or not (self._closing or _delivery_stopped.is_set()):
            return 0
        left_s = ends_at - time.monotonic()
        return math.ceil(left_s) + ABANDONED_POLL_MARGIN_S if left_s > 0 else 0

    def _release_waiting(self) -> None:
        # Never handed to Celery, so never started: visible again at once (batched).
        while self._waiting:
            self._release(self._waiting.popleft()[1])

    def basic_cancel(self, consumer_tag: str) -> Any:
        """Stop consuming; buffered messages of that queue become visible again at once."""
        result = super().basic_cancel(consumer_tag)
        if self._waiting:
            keep = [(q, p) for q, p in self._waiting if self._callback_of(q)]
            gone = [p for q, p in self._waiting if not self._callback_of(q)]
            self._waiting = deque(keep)
            for payload in gone:
                self._release(payload)
            self._batcher.flush()
        return result

    def _get_message_estimate(self, max_if_unlimited: int = RECEIVE_BATCH) -> int:
        # kombu asks for as many messages as prefetch slots are free; ask for a batch.
        return RECEIVE_BATCH

    def _buffer_low(self) -> bool:
        """Whether the buffer is down to its low-water mark: time to receive the next batch.

        The mark is a full batch (or one message per prefetch slot, if more): a
        receive takes a round trip, and a mark of one message per slot let short jobs
        drain the buffer long before the batch came back (the pool then idled for
        most of every round trip). At a backlog each receive still brings a full
        batch, so the requests per job do not change; a node holds at most the mark
        plus one batch beyond its prefetch.
        """
        return len(self._waiting) <= max(self.qos.prefetch_count or 1, RECEIVE_BATCH)

    def _schedule_queue(self, queue: str) -> None:
        # Receive while the buffer is at or below its low-water mark, so the pool
        # still has work while the next batch is on its way.
        self._loop_thread = threading.get_ident()
        self._parked.pop(queue, None)
        if queue not in self._active_queues:
            return
        if self._buffer_low():
            receive = self._get_bulk_async  # type: ignore[attr-defined]
            self._polls[queue] = time.monotonic() + float(self.wait_time_seconds)
            receive(queue, callback=promise(self._loop1, (queue,)))
        else:
            self._loop1(queue)

    def _loop1(self, queue: str, messages_fetched: int | None = None) -> None:
        # kombu calls this after each poll (with the number of messages, 0 when the
        # long poll came back empty) and when it skipped polling because every slot
        # is busy (None). Its own version either sleeps polling_interval after an
        # empty poll (wasted latency: the long poll already waited) or, with a zero
        # interval, spins through call_soon while busy. Poll again at once after a
        # poll; recheck a busy node a little later. Either way the loop is alive.
        hub: Any = getattr(self, "hub", None)  # untyped in the stubs
        schedule = self._schedule_queue
        if messages_fetched == FAILED_POLL:
            hub.call_later(RECEIVE_RETRY_S, schedule, queue)
            return
        LIVENESS.mark(queue)
        if messages_fetched is None:
            # Parked: _refill wakes it as soon as deliveries leave the buffer low.
            self._parked[queue] = hub.call_later(BUSY_RECHECK_S, schedule, queue)
        else:
            hub.call_soon(schedule, queue)

    # -- acknowledging ----------------------------------------------------------------

    def _delivery(self, delivery_tag: str) -> tuple[dict[str, Any], Any] | None:
        try:
            message = self.qos.get(delivery_tag)
        except KeyError:
            return None
        return message.delivery_info, message

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        """Apply the job's outcome: delete, back off, or dead-letter then delete."""
        self._heartbeat.forget(delivery_tag)
        found = self._delivery(delivery_tag)
        outcome: Outcome | None = found[0].get(OUTCOME_KEY) if found else None
        if found is None or "sqs_message" not in found[0]:
            super().basic_ack(delivery_tag, multiple)
            return
        delivery_info, _ = found
        self._slot_freed()
        if outcome is None or outcome.kind == "succeeded":
            self._delete_later(delivery_tag, delivery_info)
        elif outcome.kind == "retry":
            self._batcher.change_visibility(
                delivery_info["sqs_queue"],
                delivery_info["sqs_message"]["ReceiptHandle"],
                outcome.delay_s,
            )
            log.warning(
                "job.retry_scheduled",
                **outcome.log_fields(),
                delay_s=outcome.delay_s,
                error_type=outcome.error_type,
                error=outcome.error,
                **{k: v for k, v in outcome.extra.items() if k == "traceback"},
            )
            virtual.Channel.basic_ack(self, delivery_tag)
        elif self._write_dead_letter(delivery_info, outcome):
            self._delete_later(delivery_tag, delivery_info)
        else:
            # Not written to the DLQ, so not deleted: it reappears after its
            # visibility timeout and the native redrive remains the backstop.
            virtual.Channel.basic_ack(self, delivery_tag)

    def _slot_freed(self) -> None:
        # Called before the slot is actually freed (kombu's QoS ack follows): refill
        # it right after the ack, never from inside Celery's ack.
        #
        # Celery runs every ack as a callback of the event loop (hub.call_soon).
        # kombu's loop runs those callbacks, then its due timers, then polls its
        # sockets. A call_soon made from the loop's own thread does not wake the
        # poll, so a delivery scheduled that way waited for the next socket event
        # or timer: up to BUSY_RECHECK_S per job and slot when no other socket was
        # active (measured on prefork, concurrency 2: ~7 ms from an ack to the next
        # job's hand-over on average, ~0.2 ms with the timer). A zero-delay timer
        # fires in this same turn, after the ack; from another thread, call_soon
        # wakes the loop (kombu's timers are not thread-safe).
        hub = getattr(self, "hub", None)
        if hub is None or self._refill_pending or not (self._waiting or self._parked):
            return
        self._refill_pending = True
        if threading.get_ident() == self._loop_thread:
            hub.call_later(0, self._refill)
        else:
            hub.call_soon(self._refill)

    def _refill(self) -> None:
        """Hand buffered messages to free slots; wake a parked receive loop if now low."""
        self._refill_pending = False
        self._deliver_waiting()
        if not self._parked or not self._buffer_low():
            return
        for queue, timer in list(self._parked.items()):
            if timer is not None:
                timer.cancel()
            self._schedule_queue(queue)  # receives (it unparks the queue)

    def _delete_later(self, delivery_tag: str, delivery_info: dict[str, Any]) -> None:
        self._batcher.delete(
            delivery_info["sqs_queue"], delivery_info["sqs_message"]["ReceiptHandle"]
        )
        # Free the prefetch slot now: the delete is the batcher's business.
        virtual.Channel.basic_ack(self, delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """Release the delivery without deleting the message (see the module doc)."""
        self._heartbeat.forget(delivery_tag)
        self._slot_freed()
        try:
            found = self._delivery(delivery_tag)
            if requeue and found is not None:
                self._set_visibility(found[0], self._release_timeout_s(found[0]["routing_key"]))
        finally:
            self.qos.reject(delivery_tag, requeue=False)

    def _restore(self, message: Any, unwanted_delivery_info: Any = None) -> None:
        # kombu restores an unacked message (e.g. prefetched when the worker stops) by
        # publishing a copy; the original is still in SQS, so make it visible again.
        self._heartbeat.forget(message.delivery_tag)
        info = message.delivery_info
        self._set_visibility(info, self._release_timeout_s(info["routing_key"]))

    # -- SQS operations -------------------------------------------------------------

    def _client_for_url(self, queue_url: str) -> Any:
        for name, binding in self.bindings.items():
            if binding.url == queue_url:
                return self.sqs(queue=name)
        return self.sqs()

    def _client_for(self, delivery_info: dict[str, Any]) -> Any:
        return self.sqs(queue=self.canonical_queue_name(delivery_info["routing_key"]))

    def _set_visibility(self, delivery_info: dict[str, Any], timeout_s: int) -> None:
        sqs_message = delivery_info.get("sqs_message")
        if not sqs_message:
            return
        try:
            self._client_for(delivery_info).change_message_visibility(
                QueueUrl=delivery_info["sqs_queue"],
                ReceiptHandle=sqs_message["ReceiptHandle"],
                VisibilityTimeout=timeout_s,
            )
        except (ClientError, BotoCoreError) as exc:
            # The receipt handle may have expired (the job outlived its visibility
            # timeout): the message is visible again already, nothing is lost.
            log.warning("sqs.change_visibility_failed", error=str(exc), timeout_s=timeout_s)

    def _write_dead_letter(self, delivery_info: dict[str, Any], outcome: Outcome) -> bool:
        binding = self.bindings[delivery_info["routing_key"]]
        assert outcome.failure is not None
        request = dead_letter_request(
            delivery_info["sqs_message"],
            outcome.failure,
            dlq_url=binding.dlq_url,
            fifo=binding.fifo,
        )
        try:
            self._client_for(delivery_info).send_message(**request)
        except (ClientError, BotoCoreError) as exc:
            log.error("job.dead_letter_failed", **outcome.log_fields(), error=str(exc))
            return False
        log.warning(
            "job.dead_lettered",
            **outcome.log_fields(),
            reason=outcome.failure.reason,
            error_type=outcome.failure.error_type,
            error=outcome.failure.error_message,
        )
        return True


@compat.overrides
class Transport(SQS.Transport):
    """kombu's SQS transport with :class:`Channel`; select it with ``broker_transport``."""

    Channel = Channel
