"""The private Celery, kombu and billiard hooks of workers.compat, against the real classes.

Each test exercises one hook (its name says which) on kombu's real SQS channel
(through Conveyor's transport, against moto's in-process ``mock_aws``), Celery's
real request and worker classes, or a real prefork pool: when an upgrade changes
a hook, the test named for it fails. The last tests cover workers.compat itself.
"""

from __future__ import annotations

import json
import signal
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.pool import ApplyResult
from celery import Celery
from celery.concurrency.prefork import TaskPool
from celery.exceptions import WorkerShutdown
from celery.worker import state
from kombu import Connection
from kombu.asynchronous import Hub, set_event_loop
from moto import mock_aws

from infra import aws
from infra.aws.lookup import queue_depth
from infra.envelope import encode, make_envelope
from infra.failure import FAILURE_ATTRIBUTE, Failure
from workers import compat
from workers.compat import HOOKS, Hook, IncompatibleLibraryError
from workers.node import _keep_jobs_in_hand, _node_worker_class, _Stopper
from workers.outcome import Outcome
from workers.request import JobRequest, OutcomeSignal
from workers.transport import (
    BUSY_RECHECK_S,
    FAILED_POLL,
    OUTCOME_KEY,
    RECEIVE_BATCH,
    RECEIVE_RETRY_S,
    SYSTEM_ATTRIBUTES,
    UNDELIVERABLE_TASK,
    Channel,
    QueueBinding,
    Transport,
)

QUEUE = "images"  # declared name
QNAME = "t-images"  # physical name (the kombu queue)
JOB_TYPE = "image.resize"


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def binding(sqs: Any) -> QueueBinding:
    return QueueBinding(
        queue=QUEUE,
        url=sqs.create_queue(QueueName=QNAME)["QueueUrl"],
        dlq_url=sqs.create_queue(QueueName=f"{QNAME}-dlq")["QueueUrl"],
        fifo=False,
        job_types=frozenset({JOB_TYPE}),
        visibility_timeout_s=30,
        max_runtime_s={JOB_TYPE: 60.0},
    )


def open_channel(binding: QueueBinding) -> Channel:
    """A channel of Conveyor's transport, made the way Celery's consumer makes it."""
    connection = Connection(
        "sqs://",
        transport=Transport,
        transport_options={
            "region": "us-east-1",
            "predefined_queues": {QNAME: {"url": binding.url}},
            "conveyor_queues": {QNAME: binding.to_option()},
            "ack_flush_interval_s": 3600,  # sent on flush() or close() only
            "polling_interval": 0,
            "fetch_message_attributes": {
                "MessageSystemAttributeNames": SYSTEM_ATTRIBUTES,
                "MessageAttributeNames": ["All"],
            },
        },
    )
    channel = connection.channel()
    assert type(channel) is Channel  # kombu.transport.SQS:Transport.Channel
    return channel


@pytest.fixture
def channel(binding: QueueBinding) -> Iterator[Channel]:
    """A channel outside an event loop (as a producer or a test has it)."""
    channel = open_channel(binding)
    assert channel.hub is None
    yield channel
    channel.close()


@pytest.fixture
def hub() -> Iterator[Any]:
    """kombu's event loop, not running: the tests record what is scheduled on it."""
    loop = Hub()
    loop.scheduled: list[tuple[str, Any, tuple[Any, ...]]] = []  # type: ignore[misc]
    loop.call_soon = lambda fn, *args: loop.scheduled.append(("soon", fn, args))
    loop.call_later = lambda delay, fn, *args: loop.scheduled.append((delay, fn, args))
    set_event_loop(loop)
    yield loop
    set_event_loop(None)
    loop.close()


@pytest.fixture
def consumer_channel(binding: QueueBinding, hub: Any) -> Iterator[Channel]:
    """A channel made inside an event loop, as in a worker's consumer."""
    channel = open_channel(binding)
    assert channel.hub is hub
    yield channel
    channel.close()


def send_jobs(sqs: Any, url: str, count: int = 1, job_type: str = JOB_TYPE) -> list[str]:
    ids = [f"job-{i}" for i in range(count)]
    for job_id in ids:
        sqs.send_message(
            QueueUrl=url, MessageBody=encode(make_envelope(job_type, {"n": 1}, job_id=job_id))
        )
    return ids


def receive(sqs: Any, url: str, visibility_timeout_s: int = 600) -> dict[str, Any]:
    """A ReceiveMessage response, asking for what the transport asks for."""
    response: dict[str, Any] = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=visibility_timeout_s,
        MessageSystemAttributeNames=SYSTEM_ATTRIBUTES,
        MessageAttributeNames=["All"],
    )
    return response


def counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    depth = queue_depth(sqs, url)
    return depth.visible, depth.in_flight


def consume(channel: Channel, prefetch_count: int = 0) -> list[Any]:
    """Consume QNAME as Celery does; returns the kombu messages handed to it."""
    delivered: list[Any] = []
    channel.basic_qos(prefetch_count=prefetch_count)
    channel.basic_consume(QNAME, no_ack=False, callback=delivered.append, consumer_tag="c")
    return delivered


def deliver(sqs: Any, channel: Channel, binding: QueueBinding, jobs: int = 1) -> list[Any]:
    """Send ``jobs`` jobs and pass them through the channel's receive hook; Celery's share."""
    delivered = consume(channel, prefetch_count=1)
    send_jobs(sqs, binding.url, jobs)
    assert channel._on_messages_ready(binding.url, QNAME, receive(sqs, binding.url)) == jobs
    return delivered


def failure() -> Failure:
    return Failure(
        reason="exhausted",
        error_type="ValueError",
        error_message="boom",
        attempts=3,
        max_attempts=3,
        queue=QUEUE,
        worker="test",
        first_attempt_at=None,
        last_failure_at="2026-01-01T00:00:00Z",
        job_id="job-0",
        job_type=JOB_TYPE,
    )


# -- kombu: receiving ----------------------------------------------------------------------


def test_sqs_message_to_python_builds_a_celery_protocol_2_task_message(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    send_jobs(sqs, binding.url)
    receive(sqs, binding.url, visibility_timeout_s=0)  # a first attempt that came back
    [message] = receive(sqs, binding.url)["Messages"]

    payload = channel._message_to_python(message, QNAME, binding.url)

    # What Celery reads is what kombu's Message makes of the payload.
    kombu_message = channel.Message(payload, channel=channel)
    assert kombu_message.headers["task"] == JOB_TYPE
    assert kombu_message.headers["id"] == "job-0"
    assert kombu_message.headers["retries"] == 1  # ApproximateReceiveCount 2
    assert kombu_message.delivery_tag == message["ReceiptHandle"]
    assert kombu_message.delivery_info["routing_key"] == QNAME
    assert kombu_message.delivery_info["sqs_queue"] == binding.url
    args, kwargs, embed = kombu_message.decode()
    assert args == []
    assert kwargs["queue"] == QUEUE
    assert kwargs["message"]["Body"] == message["Body"]
    assert kwargs["message"]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert embed["chain"] is None
    assert channel._heartbeat.held() == 1  # its lease is kept from the receive on


def test_sqs_message_to_python_makes_anything_else_the_undeliverable_task(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    send_jobs(sqs, binding.url, job_type="unknown.type")
    sqs.send_message(QueueUrl=binding.url, MessageBody="not json")
    messages = receive(sqs, binding.url)["Messages"]
    payloads = [channel._message_to_python(m, QNAME, binding.url) for m in messages]
    assert [p["headers"]["task"] for p in payloads] == [UNDELIVERABLE_TASK] * 2
    assert {p["headers"]["id"] for p in payloads} == {"job-0", messages[1]["MessageId"]}


def test_sqs_on_messages_ready_hands_celery_its_prefetch_and_keeps_the_rest(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    delivered = deliver(sqs, channel, binding, jobs=3)
    # kombu's consumer callback (virtual Transport._callbacks) took one, into its QoS.
    assert [m.headers["id"] for m in delivered] == ["job-0"]
    assert channel.qos.get(delivered[0].delivery_tag) is delivered[0]
    assert not channel.qos.can_consume()
    assert channel._heartbeat.held() == 3

    channel.basic_ack(delivered[0].delivery_tag)
    assert channel.qos.can_consume()  # the slot is free before the delete is sent
    channel._deliver_waiting()  # what the event loop does next
    assert [m.headers["id"] for m in delivered] == ["job-0", "job-1"]


def test_sqs_on_messages_ready_counts_a_failed_request_as_a_failed_poll(
    channel: Channel, binding: QueueBinding
) -> None:
    consume(channel)
    # kombu's async client answers a refused connection with a list.
    assert channel._on_messages_ready(binding.url, QNAME, []) == FAILED_POLL


def test_sqs_on_messages_ready_leaves_messages_of_a_cancelled_consumer_to_kombu(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    consume(channel)
    channel.basic_cancel("c")
    send_jobs(sqs, binding.url, 2)
    assert channel._on_messages_ready(binding.url, QNAME, receive(sqs, binding.url)) == 0
    assert counts(sqs, binding.url) == (2, 0)  # kombu made them visible again


def test_sqs_get_bulk_async_asks_get_message_estimate_for_a_full_batch(
    consumer_channel: Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = consumer_channel
    consume(channel, prefetch_count=1)  # kombu itself would ask for 1
    asked: list[int] = []
    monkeypatch.setattr(
        channel.asynsqs(queue=QNAME),
        "receive_message",
        lambda *args, number_messages, **kwargs: asked.append(number_messages),
    )
    assert channel._get_message_estimate() == RECEIVE_BATCH
    channel._get_bulk_async(QNAME, callback=None)
    assert asked == [RECEIVE_BATCH]


def test_sqs_schedule_queue_receives_and_loop1_polls_again_at_once(
    sqs: Any,
    consumer_channel: Channel,
    binding: QueueBinding,
    hub: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    channel = consumer_channel
    delivered = consume(channel, prefetch_count=1)
    assert ("soon", channel._schedule_queue, (QNAME,)) in hub.scheduled  # basic_consume
    receives: list[Any] = []
    monkeypatch.setattr(
        channel.asynsqs(queue=QNAME),
        "receive_message",
        lambda *args, callback, **kwargs: receives.append(callback),
    )
    send_jobs(sqs, binding.url, RECEIVE_BATCH + 3)

    hub.scheduled.clear()
    channel._schedule_queue(QNAME)
    [on_response] = receives
    on_response(receive(sqs, binding.url))  # kombu: _on_messages_ready, then _loop1
    assert len(delivered) == 1
    assert hub.scheduled == [("soon", channel._schedule_queue, (QNAME,))]

    # Nine buffered: down to the low-water mark (a batch), so the next batch is asked for.
    hub.scheduled.clear()
    channel._schedule_queue(QNAME)
    assert len(receives) == 2
    receives[1](receive(sqs, binding.url))
    assert len(delivered) == 1

    # Twelve buffered, one slot: more than the mark waits, so no receive.
    hub.scheduled.clear()
    channel._schedule_queue(QNAME)
    assert len(receives) == 2
    assert hub.scheduled == [(BUSY_RECHECK_S, channel._schedule_queue, (QNAME,))]

    # A failed request: polled again after a pause.
    hub.scheduled.clear()
    channel._loop1(QNAME, FAILED_POLL)
    assert hub.scheduled == [(RECEIVE_RETRY_S, channel._schedule_queue, (QNAME,))]

    # A cancelled queue (kombu's _active_queues) is polled no more.
    channel.basic_cancel("c")
    hub.scheduled.clear()
    channel._schedule_queue(QNAME)
    assert len(receives) == 2
    assert hub.scheduled == []


# -- kombu: acknowledging ------------------------------------------------------------------


def test_sqs_basic_ack_buffers_the_delete_and_frees_the_slot_at_once(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    [message] = deliver(sqs, channel, binding)
    channel.basic_ack(message.delivery_tag)  # virtual Channel.basic_ack freed the slot
    assert channel.qos.can_consume()
    assert channel._batcher.pending() == 1
    assert counts(sqs, binding.url) == (0, 1)  # not deleted yet
    channel._batcher.flush()
    assert counts(sqs, binding.url) == (0, 0)


def test_sqs_basic_ack_of_a_retry_changes_the_visibility_and_never_republishes(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    [message] = deliver(sqs, channel, binding)
    message.delivery_info[OUTCOME_KEY] = Outcome(kind="retry", queue=QUEUE, attempt=1, delay_s=0)
    channel.basic_ack(message.delivery_tag)
    channel._batcher.flush()
    [again] = receive(sqs, binding.url)["Messages"]
    assert again["MessageId"] == message.delivery_info["sqs_message"]["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


def test_sqs_basic_ack_of_a_dead_letter_writes_the_dlq_then_deletes(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    [message] = deliver(sqs, channel, binding)
    message.delivery_info[OUTCOME_KEY] = Outcome(
        kind="dead_letter", queue=QUEUE, attempt=3, failure=failure()
    )
    channel.basic_ack(message.delivery_tag)
    channel._batcher.flush()
    assert counts(sqs, binding.url) == (0, 0)
    [dead] = sqs.receive_message(QueueUrl=binding.dlq_url, MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert dead["Body"] == message.delivery_info["sqs_message"]["Body"]
    record = json.loads(dead["MessageAttributes"][FAILURE_ATTRIBUTE]["StringValue"])
    assert record["reason"] == "exhausted"


def test_sqs_basic_reject_never_deletes_even_without_a_redrive_policy(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    [message] = deliver(sqs, channel, binding)  # the queue has no RedrivePolicy
    channel.basic_reject(message.delivery_tag, requeue=False)  # kombu's would delete
    assert channel.qos.can_consume()  # SQS QoS.reject freed the slot
    channel._batcher.flush()
    assert counts(sqs, binding.url) == (0, 1)  # back after its visibility timeout


def test_sqs_basic_reject_with_requeue_makes_the_message_visible_at_once(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    [message] = deliver(sqs, channel, binding)
    channel.basic_reject(message.delivery_tag, requeue=True)
    assert counts(sqs, binding.url) == (1, 0)  # the original: no copy was published


def test_sqs_restore_on_close_makes_unacked_messages_visible_instead_of_copying(
    sqs: Any, binding: QueueBinding
) -> None:
    channel = open_channel(binding)
    [message] = deliver(sqs, channel, binding)
    channel.close()  # kombu: restore_unacked -> _restore
    assert counts(sqs, binding.url) == (1, 0)
    [again] = receive(sqs, binding.url)["Messages"]
    assert again["MessageId"] == message.delivery_info["sqs_message"]["MessageId"]


def test_sqs_close_sends_the_buffered_deletes(sqs: Any, binding: QueueBinding) -> None:
    channel = open_channel(binding)
    [message] = deliver(sqs, channel, binding)
    channel.basic_ack(message.delivery_tag)
    channel.close()
    assert counts(sqs, binding.url) == (0, 0)


def test_sqs_basic_cancel_releases_what_the_channel_buffered(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    delivered = deliver(sqs, channel, binding, jobs=3)
    channel.basic_cancel("c")
    assert channel._callback_of(QNAME) is None  # kombu popped the callback
    assert counts(sqs, binding.url) == (2, 1)  # two buffered: visible again at once
    channel.basic_ack(delivered[0].delivery_tag)  # the one Celery has still counts


def test_sqs_new_sqs_client_takes_clients_from_infra_aws(
    channel: Channel, binding: QueueBinding
) -> None:
    before = aws.request_counts().get("sqs.GetQueueAttributes", 0)
    channel.sqs(queue=QNAME).get_queue_attributes(QueueUrl=binding.url)
    assert aws.request_counts().get("sqs.GetQueueAttributes", 0) == before + 1


# -- celery: the request -------------------------------------------------------------------


def run_job() -> None:
    return None


def job_request(message: Any) -> JobRequest:
    app = Celery("t", set_as_current=False)
    # Not shared: a shared task would be added to every app the process finalizes.
    app.task(name=JOB_TYPE, shared=False, acks_late=True, Request=JobRequest)(run_job)
    # As Celery's consumer makes it (celery.worker.strategy).
    return JobRequest(
        message,
        on_ack=message.ack_log_error,
        on_reject=message.reject_log_error,
        app=app,
        task=app.tasks[JOB_TYPE],
    )


def test_request_on_accepted_starts_the_runtime_limit(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    [message] = deliver(sqs, channel, binding)
    request = job_request(message)
    request.on_accepted(pid="123", time_accepted=1.0)
    assert request.worker_pid == "123"  # Celery's own part ran
    lease = channel._heartbeat._leases[message.delivery_tag]
    assert lease.started_at is not None
    assert lease.deadline == lease.started_at + 60.0


def test_request_on_failure_sends_the_outcome_to_the_transport(
    sqs: Any, channel: Channel, binding: QueueBinding
) -> None:
    [message] = deliver(sqs, channel, binding)
    request = job_request(message)
    state.task_reserved(request)
    outcome = Outcome(kind="retry", queue=QUEUE, attempt=1, delay_s=0)
    try:
        raise OutcomeSignal(outcome)
    except OutcomeSignal:
        exc_info = ExceptionInfo()  # what the pool sends back from the child
    assert isinstance(exc_info.exception, ExceptionWithTraceback)  # the original is in .exc

    request.on_failure(exc_info)

    assert request.id not in state.requests  # celery.worker.state.task_ready
    assert message.acknowledged
    channel._batcher.flush()
    assert counts(sqs, binding.url) == (1, 0)  # the retry outcome was applied


# -- celery and billiard: the node's shutdown ----------------------------------------------


@pytest.fixture
def task_pool() -> Iterator[Any]:
    """A started prefork pool (one child), as the consumer has it."""
    app = Celery("t", set_as_current=False)
    pool = TaskPool(limit=1, threads=False, app=app, initargs=(app, "t@test"))
    pool.start()
    yield pool
    # The tests' jobs never reached the child: nothing to put back when it stops.
    pool._pool._cache.clear()
    pool.terminate()


def jobs_in(pool: Any) -> dict[str, ApplyResult]:
    """One job in each state the pool's flush tells apart, in its real job cache."""
    asyn = pool._pool
    accepted = ApplyResult(asyn._cache, None)
    accepted._accepted = True
    never_written = ApplyResult(asyn._cache, None)
    written = ApplyResult(asyn._cache, None)
    written._write_to = asyn._pool[0]  # fully written: its writer is done

    def _write_job() -> Iterator[None]:  # named as AsynPool's own writer
        yield

    being_written = ApplyResult(asyn._cache, None)
    being_written._write_to = asyn._pool[0]
    being_written._writer_gen = _write_job()  # type: ignore[attr-defined]
    being_written._writer = weakref.ref(being_written._writer_gen)  # type: ignore[attr-defined]
    asyn._active_writers.add(being_written._writer_gen)  # type: ignore[attr-defined]
    return {
        "accepted": accepted,
        "never_written": never_written,
        "written": written,
        "being_written": being_written,
    }


def kept(pool: Any, jobs: dict[str, ApplyResult]) -> set[str]:
    return {name for name, job in jobs.items() if job._job in pool._pool._cache}


def test_asynpool_flush_forgets_written_jobs_unless_the_node_keeps_them(task_pool: Any) -> None:
    jobs = jobs_in(task_pool)
    task_pool.flush()  # Celery's own
    assert kept(task_pool, jobs) == {"accepted"}


def test_node_flush_keeps_jobs_written_to_a_child_during_a_warm_shutdown(task_pool: Any) -> None:
    stopper = _Stopper(grace_s=30.0)
    _keep_jobs_in_hand(task_pool, stopper)
    stopper.stopping.set()
    jobs = jobs_in(task_pool)
    task_pool.flush()
    assert kept(task_pool, jobs) == {"accepted", "written"}


def test_node_flush_is_celerys_own_when_not_stopping(task_pool: Any) -> None:
    _keep_jobs_in_hand(task_pool, _Stopper(grace_s=30.0))  # e.g. a lost connection
    jobs = jobs_in(task_pool)
    task_pool.flush()
    assert kept(task_pool, jobs) == {"accepted"}


def test_worker_state_should_stop_zero_is_a_warm_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "should_stop", 0)
    with pytest.raises(WorkerShutdown):
        state.maybe_shutdown()


@pytest.mark.filterwarnings("ignore::celery.platforms.SecurityWarning")  # tests may run as root
def test_worker_install_platform_tweaks_and_on_consumer_ready_are_the_nodes(
    task_pool: Any,
) -> None:
    app = Celery("t", set_as_current=False, broker="memory://")
    stopper = _Stopper(grace_s=30.0)
    worker = _node_worker_class(app, stopper)(hostname="n@test", pool="solo", quiet=True)
    saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)}
    saved.update({s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)})
    try:
        worker.install_platform_tweaks(worker)
        assert signal.getsignal(signal.SIGTERM) is stopper
        assert signal.getsignal(signal.SIGINT) is stopper
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    worker.on_consumer_ready(SimpleNamespace(pool=task_pool))
    assert task_pool.flush.keeps_jobs_in_hand


# -- workers.compat itself -----------------------------------------------------------------


def test_every_hook_holds_on_the_installed_libraries() -> None:
    compat.check_all()


@pytest.mark.parametrize("version", ["5.6.3", "5.8.0", "6.0.0", "5.8.0rc1"])
def test_an_unsupported_version_raises_naming_package_version_and_range(version: str) -> None:
    with pytest.raises(
        IncompatibleLibraryError, match=rf"kombu {version} is installed.*>=5\.7\.0,<5\.8"
    ):
        compat.check_version("kombu", version)


@pytest.mark.parametrize("version", ["5.7.0", "5.7.9", "5.7.1.post1"])
def test_a_supported_version_passes(version: str) -> None:
    compat.check_version("celery", version)


def test_a_missing_attribute_raises_naming_the_hook() -> None:
    gone = Hook("kombu.transport.SQS:Channel", "_message_to_pythonic", "override", "test")
    with pytest.raises(
        IncompatibleLibraryError, match=r"SQS:Channel\._message_to_pythonic.* is gone"
    ):
        compat.check_hook(gone)


def test_an_attribute_no_longer_assigned_raises_naming_the_hook() -> None:
    hook = Hook(
        "billiard.pool:ApplyResult",
        "_acceptedness",
        "read",
        "test",
        assigned_in="billiard.pool:ApplyResult.__init__",
    )
    with pytest.raises(IncompatibleLibraryError, match=r"ApplyResult\._acceptedness.*no longer"):
        compat.check_hook(hook)


def test_changed_parameters_raise_naming_the_hook() -> None:
    hook = HOOKS["kombu.transport.SQS:Channel._message_to_python"]
    changed = Hook(hook.owner, hook.attribute, hook.use, hook.relied_on, params=("message",))
    with pytest.raises(IncompatibleLibraryError, match=r"_message_to_python.*takes"):
        compat.check_hook(changed)


def test_an_unlisted_override_is_refused() -> None:
    with pytest.raises(IncompatibleLibraryError, match=r"_release_messages.*not an override"):

        @compat.overrides
        class Unlisted(Channel):
            def _release_messages(self, queue: str, qname: str, messages: Any) -> None:
                return None


def test_requiring_an_unlisted_hook_is_refused() -> None:
    with pytest.raises(IncompatibleLibraryError, match="not a hook listed"):
        compat.require("kombu.transport.SQS:Channel._get")
