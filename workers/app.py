"""A Celery app per worker pool, consuming its SQS queues through Conveyor's transport."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from kombu import Queue as KombuQueue

from infra import aws
from infra.aws import lookup
from infra.settings import load_settings
from infra.topology import Topology
from workers.aio.bridge import await_job
from workers.aio.pool import POOL_CLASS as ASYNCIO_POOL_CLASS
from workers.idempotency import job_hooks
from workers.recycling import RecyclePolicy
from workers.request import OutcomeSignal
from workers.runner import JobRunner
from workers.time_limit import HARD_LIMIT_GRACE_S, alarm_limit
from workers.transport import SYSTEM_ATTRIBUTES, UNDELIVERABLE_TASK, QueueBinding

#: SQS's longest long poll: an idle node costs about 3 ReceiveMessage calls a minute.
LONG_POLL_S = 20


def resolve_bindings(topology: Topology, queues: list[str]) -> list[QueueBinding]:
    """Look up the URLs of ``queues`` and their DLQs; nothing is created here."""
    bindings = []
    for queue in queues:
        urls = [lookup.queue_url(topology, queue), lookup.dlq_url(topology, queue)]
        bindings.append(
            QueueBinding(
                queue=queue,
                url=urls[0],
                dlq_url=urls[1],
                fifo=topology.queues[queue].fifo,
                job_types=frozenset(topology.job_types_of_queue(queue)),
                visibility_timeout_s=int(topology.queues[queue].visibility_timeout_s),
                max_runtime_s={
                    jt: runtime
                    for jt in topology.job_types_of_queue(queue)
                    if (runtime := topology.job_types[jt].max_runtime_s) is not None
                },
            )
        )
    return bindings


def create_app(
    topology: Topology,
    queues: list[str],
    *,
    name: str = "conveyor",
    concurrency: int = 2,
    worker_pool: str = "prefork",
    bindings: list[QueueBinding] | None = None,
    recycling: RecyclePolicy | None = None,
) -> Celery:
    """A Celery app that runs the jobs of ``queues`` (declared names).

    The settings are the DLQ-friendly ones: late acks, no ack on failure or timeout,
    reject (never ack) when a pool process dies, prefetch 1 per process slot (the
    transport receives 10 at a time and buffers the rest itself), and neither
    results, events nor remote control (SQS supports none of them). ``recycling``:
    a prefork pool's children are replaced past its limits (other pool kinds recycle
    the node: :mod:`workers.node`).
    """
    bindings = bindings if bindings is not None else resolve_bindings(topology, queues)
    runner = JobRunner(
        topology,
        queues,
        hooks=job_hooks(topology, queues),
        # async def handlers: awaited on the asyncio pool's loop (workers.aio).
        awaiter=await_job if worker_pool == "asyncio" else None,
        # solo runs jobs in the main thread: prefork's soft limit, by a timer signal.
        time_limit=alarm_limit if worker_pool == "solo" else None,
    )
    app = Celery(name, set_as_current=False)
    app.conf.update(
        broker_url="sqs://",
        broker_transport="workers.transport:Transport",
        broker_transport_options={
            "region": aws.region_name(),
            "predefined_queues": {topology.queue_name(b.queue): {"url": b.url} for b in bindings},
            "conveyor_queues": {topology.queue_name(b.queue): b.to_option() for b in bindings},
            "wait_time_seconds": LONG_POLL_S,
            "ack_flush_interval_s": load_settings().worker.ack_flush_interval_s,
            # solo runs each job in the consumer loop's thread, so the loop cannot
            # extend the job's visibility while it runs: a thread of its own does.
            "heartbeat_thread": worker_pool == "solo",
            # kombu waits this long after an empty poll; the long poll already waited.
            "polling_interval": 0,
            "fetch_message_attributes": {
                "MessageSystemAttributeNames": SYSTEM_ATTRIBUTES,
                "MessageAttributeNames": ["All"],
            },
        },
        broker_connection_retry_on_startup=True,
        task_queues=[KombuQueue(topology.queue_name(b.queue)) for b in bindings],
        task_acks_late=True,
        task_acks_on_failure_or_timeout=False,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        result_backend=None,
        worker_prefetch_multiplier=1,
        worker_concurrency=concurrency,
        worker_pool=ASYNCIO_POOL_CLASS if worker_pool == "asyncio" else worker_pool,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        accept_content=["json"],
        task_serializer="json",
    )
    if recycling is not None and worker_pool == "prefork":
        app.conf.update(recycling.celery_settings())

    def run_job(task: Task[Any, Any], message: dict[str, Any], queue: str) -> dict[str, Any]:
        outcome = runner.run(message, queue)
        if outcome.kind != "succeeded":
            raise OutcomeSignal(outcome)
        return {"job_id": outcome.job_id, "duration_s": outcome.duration_s}

    task_options: dict[str, Any] = {
        "bind": True,
        "Request": "workers.request:JobRequest",
        "throws": (OutcomeSignal,),
        "acks_late": True,
    }
    job_types = sorted({jt for b in bindings for jt in b.job_types})
    for job_type in [*job_types, UNDELIVERABLE_TASK]:
        options = dict(task_options)
        runtime_s = (
            topology.job_types[job_type].max_runtime_s if job_type in topology.job_types else None
        )
        if runtime_s is not None and worker_pool == "prefork":
            # Soft limit: SoftTimeLimitExceeded inside the handler, a failed attempt
            # like any other. Hard limit: the process is killed; the message comes
            # back (visibility 0) and the attempt is spent. Other pools: workers.time_limit.
            options["soft_time_limit"] = runtime_s
            options["time_limit"] = runtime_s + HARD_LIMIT_GRACE_S
        # celery-types cannot type a decorator built from **options.
        app.task(name=job_type, **options)(run_job)  # type: ignore[no-untyped-call]
    return app
