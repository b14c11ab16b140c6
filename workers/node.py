"""One worker node: a Celery worker process for one pool of queues.yaml."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import signals

from infra import aws
from infra.logs import get_logger
from infra.topology import Topology, check_imports
from workers.app import create_app

log = get_logger("conveyor.worker")

#: Celery's per-task INFO lines ("received", "succeeded in") repeat what Conveyor's
#: own job.* events say, with less context; keep their warnings and errors.
_QUIET_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.worker.consumer.mingle")


@signals.setup_logging.connect
def _keep_our_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from configuring logging itself: the
    # process already did, through infra.logs, and pool children inherit it.
    return None


def run_node(
    topology: Topology,
    pool: str,
    *,
    concurrency: int | None = None,
    loglevel: str = "INFO",
) -> int:
    """Run a worker node of ``pool`` in the foreground until it is stopped; its exit code.

    SIGTERM (or Ctrl-C) is a warm shutdown: stop receiving, finish the jobs in hand,
    make the rest visible again. A second signal stops at once.
    """
    check_imports(topology, handlers=True)
    spec = topology.pools[pool]
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    app = create_app(
        topology,
        spec.queues,
        name=f"conveyor-{pool}",
        concurrency=concurrency or spec.concurrency,
        worker_pool=spec.worker_pool,
    )
    worker = app.Worker(
        hostname=f"{pool}@{socket.gethostname()}-{os.getpid()}",
        queues=[topology.queue_name(q) for q in spec.queues],
        loglevel=loglevel,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        optimization="fair",
        quiet=True,
    )
    worker.start()
    code = int(worker.exitcode or 0)
    # What this node cost in AWS requests, by action (benchmarks and tests read it).
    log.info("worker.stopped", pool=pool, exit_code=code, aws_requests=aws.request_counts())
    return code
