"""Vanilla Celery 5.7 on SQS: kombu's own SQS transport, default-but-sane settings.

Run by the benchmark as ``celery -A benchmarks.systems.celery_app worker`` and
imported by its producer. Everything comes from the environment the driver sets:
``BENCH_CELERY_BROKER`` (``sqs://key:secret@127.0.0.1:PORT``, the endpoint is taken
from it), ``BENCH_CELERY_QUEUE`` and ``BENCH_CELERY_QUEUE_URL`` (a queue the driver
created with the same attributes as Conveyor's: visibility timeout, RedrivePolicy).
The settings are the DLQ-friendly ones — late acks and reject on worker lost, so a
message is deleted only after its job ran and one whose worker died comes back (and
reaches the DLQ through the RedrivePolicy), prefetch 1 per process — and kombu's
defaults otherwise (10 s long poll), except a 0.1 s polling interval (see below).
"""

from __future__ import annotations

import os

from celery import Celery

from benchmarks import jobs

app = Celery("bench-vanilla", set_as_current=False)
app.conf.update(
    broker_url=os.environ.get("BENCH_CELERY_BROKER", "sqs://"),
    broker_transport_options={
        "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "is_secure": False,
        "visibility_timeout": 30,
        # kombu's default (1 s) is also how long a node whose prefetch slots are all
        # taken waits before it may poll again: at prefetch 1 per process that caps a
        # 2-process node at ~2-3 jobs/s whatever the jobs cost. 0.1 s is what a user
        # who measured would set; the long poll stays kombu's 10 s.
        "polling_interval": 0.1,
        "predefined_queues": {
            os.environ.get("BENCH_CELERY_QUEUE", "bench"): {
                "url": os.environ.get("BENCH_CELERY_QUEUE_URL", ""),
            }
        },
    },
    broker_connection_retry_on_startup=True,
    task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", "bench"),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    accept_content=["json"],
    task_serializer="json",
)


@app.task(name=jobs.JOB_TYPE)
def work(enqueued_at: float, cpu_ms: float = 0.0, io_ms: float = 0.0) -> None:
    """The benchmark job."""
    jobs.run(enqueued_at, cpu_ms, io_ms)
