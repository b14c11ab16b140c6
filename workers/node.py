"""One worker node: a Celery worker process for one pool of queues.yaml.

Around Celery's worker it adds what a node on SQS needs:

* stopping: SIGTERM/SIGINT stop receiving and let the jobs in hand finish within
  ``shutdown_grace_s`` (then they are cancelled and their messages made visible);
  messages received but not started are made visible at once and pending deletes
  are flushed; the exit code is 0. A second signal stops at once.
* liveness: a watchdog exits non-zero when the receive loop has not completed a
  turn within ``liveness_timeout_s``, so the supervisor restarts the node;
* recycling (the pool's ``max_jobs_per_child`` / ``max_memory_per_child_mb``, see
  :mod:`workers.recycling`): prefork children are replaced by Celery; a threads
  or solo node stops as on SIGTERM and exits with ``EXIT_RECYCLED``;
* small pool children: before the first fork the node's start-up objects are
  frozen out of the garbage collector (``gc.freeze``), so neither a child's
  collections nor the node's (Celery collects before forking each child) write to,
  and so copy, the pages the children share with the node;
* ``/healthz`` and ``/metrics`` on ``health_port``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

from billiard import util as billiard_util
from celery import platforms, signals
from celery.exceptions import WorkerTerminate
from celery.worker import state

from infra import aws
from infra.errors import EXIT_RECYCLED
from infra.logs import get_logger
from infra.topology import Topology, check_imports
from workers import compat
from workers.app import create_app
from workers.health import serve_health
from workers.liveness import LIVENESS
from workers.metrics import prepare_multiprocess_dir, render
from workers.recycling import NodeRecycler, RecyclePolicy
from workers.time_limit import OverrunWatch, runtime_limits
from workers.transport import messages_held, stop_delivering

log = get_logger("conveyor.worker")

# The Celery and billiard internals the shutdown below relies on (NodeWorker's
# overrides are checked by @compat.overrides).
compat.require(
    "celery.worker.state.should_stop",
    "celery.concurrency.prefork:TaskPool.flush",
    "celery.concurrency.prefork:TaskPool._pool",
    "celery.concurrency.asynpool:AsynPool.flush",
    "celery.concurrency.asynpool:AsynPool._active_writers",
    "billiard.pool:Pool._cache",
    "billiard.pool:ApplyResult._accepted",
    "billiard.pool:ApplyResult._write_to",
    "billiard.pool:ApplyResult._writer",
    "billiard.util.get_pdeathsig",
)

#: Exit code of a node that stopped because its receive loop stalled.
EXIT_UNHEALTHY = 3
#: Exit code of a node stopped by a second signal, abandoning its jobs in hand.
EXIT_FORCED = 1
#: After an overrun, how long past its grace period a draining node may take to exit.
OVERRUN_EXIT_MARGIN_S = 10.0

#: Celery's per-task INFO lines ("received", "succeeded in") repeat what Conveyor's
#: own job.* events say, with less context; keep their warnings and errors.
_QUIET_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.worker.consumer.mingle")


@signals.setup_logging.connect
def _keep_our_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from configuring logging itself: the
    # process already did, through infra.logs, and pool children inherit it.
    return None


class _Stopper:
    """Conveyor's SIGTERM/SIGINT handling (installed over Celery's)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.stopping = threading.Event()
        #: Set by the watchdog: the node stops because its receive loop stalled.
        self.unhealthy = False
        #: Set by a second signal: jobs in hand were abandoned.
        self.forced = False
        #: Why the node is being recycled (threads and solo pools), once it is.
        self.recycled: str | None = None

    def recycle(self, reason: str) -> None:
        """Stop the node the way SIGTERM does, to be restarted fresh by its supervisor."""
        if self.stopping.is_set():
            return  # already stopping; a second SIGTERM would abandon the jobs in hand
        self.recycled = reason
        # The signal path itself, so a recycle drains exactly like a scale-in.
        os.kill(os.getpid(), signal.SIGTERM)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stopping.is_set():
            log.warning("worker.stopping_now", signal=name)
            self.forced = True
            # Celery's hard shutdown: running jobs are abandoned; their messages
            # reappear when their visibility timeout ends.
            raise WorkerTerminate(1)
        self.stopping.set()
        # The one gate: from now on the transport hands no message to the pool (it
        # releases them instead). Only a flag here: this runs inside a signal handler.
        stop_delivering()
        log.info("worker.stopping", signal=name, grace_s=self.grace_s)
        state.should_stop = 0  # type: ignore[assignment]  # Celery: warm shutdown
        timer = threading.Timer(self.grace_s, self._grace_over)
        timer.daemon = True
        timer.start()

    def _grace_over(self) -> None:
        log.warning("worker.grace_over", grace_s=self.grace_s)
        # Celery's cold shutdown cancels the jobs still running; acks_late makes
        # their messages visible again for another node.
        os.kill(os.getpid(), signal.SIGQUIT)


def _keep_jobs_in_hand(task_pool: Any, stopper: _Stopper) -> None:
    """Stop a warm shutdown from dropping jobs already written to a pool process.

    Celery's consumer, when it stops, calls the prefork pool's ``flush``, which
    forgets every job whose process has not yet reported it started ("accepted"):
    it assumes the broker redelivers them. But a job fully written to a process's
    pipe runs anyway; its result then finds no job to report to, its message is
    never acknowledged, and closing the channel makes it visible again, so another
    node runs it a second time. A job handed to the pool a few milliseconds before
    the shutdown began (its acceptance still unread) is exactly that case. So during
    a warm shutdown, keep those jobs: their results come back while the pool drains
    and their outcome is applied (delete, backoff, dead letter). Jobs never written
    (still in the pool's outbound buffer) are dropped as before: they never ran, and
    their messages are made visible again. Relies on the hooks required above.
    """
    flush = getattr(task_pool, "flush", None)
    if flush is None or getattr(flush, "keeps_jobs_in_hand", False):
        return  # not the prefork pool (nothing is forgotten), or wrapped already

    def keeping_flush() -> None:
        pool = getattr(task_pool, "_pool", None)
        cache: dict[Any, Any] | None = getattr(pool, "_cache", None)
        if not stopper.stopping.is_set() or cache is None:
            flush()  # a lost connection: Celery's own recovery
            return
        writing = set(getattr(pool, "_active_writers", ()))
        written = {
            key: job
            for key, job in cache.items()
            if not job._accepted
            and getattr(job, "_write_to", None) is not None
            and _job_writer(job) not in writing
        }
        flush()
        cache.update(written)
        if written:
            log.info("worker.jobs_in_hand_kept", jobs=len(written))

    keeping_flush.keeps_jobs_in_hand = True  # type: ignore[attr-defined]
    task_pool.flush = keeping_flush


def _job_writer(job: Any) -> Any:
    """The generator writing ``job`` to its process, None once it is written."""
    ref = getattr(job, "_writer", None)
    return ref() if ref is not None else None


def _node_worker_class(app: Any, stopper: _Stopper) -> Any:
    """``app``'s Celery worker class with the node's signal handling and pool flush."""

    @compat.overrides
    class NodeWorker(app.Worker):  # type: ignore[misc]
        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)
            platforms.signals["SIGTERM"] = stopper
            platforms.signals["SIGINT"] = stopper

        def on_consumer_ready(self, consumer: Any) -> None:
            super().on_consumer_ready(consumer)
            _keep_jobs_in_hand(consumer.pool, stopper)

    return NodeWorker


def _prepare_for_fork(topology: Topology, queues: list[str]) -> None:
    """Build in the node what every pool child would otherwise build for itself.

    Clients are per process, but the parsed service model (several MB for DynamoDB)
    is kept by the one shared boto3 session (:mod:`infra.aws`): parsed here, before
    the fork, every child uses the node's copy instead of parsing its own. The same
    for the C parser billiard's children use (through cffi, when it is installed) to
    set their parent-death signal: cffi keeps one per process, built on first use.
    """
    with contextlib.suppress(OSError):
        billiard_util.get_pdeathsig()  # type: ignore[attr-defined]  # not in the stubs
    job_types = [
        topology.job_types[name]
        for queue in queues
        for name in topology.job_types_of_queue(queue)
        if name in topology.job_types
    ]
    if any(jt.ledger or jt.idempotency_guard for jt in job_types):
        aws.client("dynamodb")  # the job ledger, the idempotency guard


def _freeze_before_first_fork() -> None:
    # Collect first, so garbage is not frozen. What is left was built at start-up
    # (modules, classes, the topology, the app) and lives as long as the node: frozen
    # for good, it is never traversed, so its pages stay shared with every child. The
    # node's later objects are not frozen (nor leaked as cycles): a child recycled
    # later copies the few pages they touch.
    if _frozen:
        return
    _frozen.append(True)
    gc.collect()
    gc.freeze()


_frozen: list[bool] = []


def _watchdog(timeout_s: float, stopper: _Stopper) -> None:
    while not stopper.stopping.is_set():
        age_s = LIVENESS.age_s()
        if age_s > timeout_s:
            log.error("worker.unhealthy", last_poll_age_s=round(age_s, 1), limit_s=timeout_s)
            stopper.unhealthy = True
            stopper.stopping.set()
            os.kill(os.getpid(), signal.SIGQUIT)  # cold shutdown, exit code 1
            time.sleep(30)  # give the cold shutdown its chance
            log.error("worker.unhealthy_exit", exit_code=EXIT_UNHEALTHY)
            os._exit(EXIT_UNHEALTHY)
        time.sleep(1.0)  # a periodic check, not synchronisation


def run_node(
    topology: Topology,
    pool: str,
    *,
    concurrency: int | None = None,
    loglevel: str = "INFO",
    health_port: int | None = None,
    liveness_timeout_s: float = 120.0,
    shutdown_grace_s: float = 30.0,
) -> int:
    """Run a worker node of ``pool`` in the foreground until it is stopped; its exit code."""
    prepare_multiprocess_dir()
    check_imports(topology, handlers=True)
    spec = topology.pools[pool]
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    recycling = RecyclePolicy.of(spec)
    app = create_app(
        topology,
        spec.queues,
        name=f"conveyor-{pool}",
        concurrency=concurrency or spec.concurrency,
        worker_pool=spec.worker_pool,
        recycling=recycling,
    )
    stopper = _Stopper(shutdown_grace_s)
    if spec.worker_pool == "prefork":
        _prepare_for_fork(topology, spec.queues)
        os.register_at_fork(before=_freeze_before_first_fork)
    else:
        if recycling.enabled:
            # Jobs run in this process: task_postrun fires here after each of them.
            recycler = NodeRecycler(recycling, stopper.recycle)
            signals.task_postrun.connect(recycler.job_finished, weak=False)
        # prefork's hard time limit, for jobs that run in this process.
        if limits := runtime_limits(topology, spec.queues):
            watch = OverrunWatch(
                limits, stopper.recycle, exit_after_s=shutdown_grace_s + OVERRUN_EXIT_MARGIN_S
            )
            signals.task_prerun.connect(watch.job_started, weak=False)
            signals.task_postrun.connect(watch.job_finished, weak=False)
            watch.start()
    worker = _node_worker_class(app, stopper)(
        hostname=f"{pool}@{socket.gethostname()}-{os.getpid()}",
        queues=[topology.queue_name(q) for q in spec.queues],
        loglevel=loglevel,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        optimization="fair",
        quiet=True,
    )
    if health_port is not None:
        server = serve_health(
            health_port,
            healthy=lambda: _health(liveness_timeout_s),
            metrics=lambda: render(
                {
                    "conveyor_worker_last_poll_age_seconds": LIVENESS.age_s(),
                    "conveyor_jobs_in_flight": messages_held(),
                    "conveyor_sqs_receive_message_requests": aws.request_counts().get(
                        "sqs.ReceiveMessage", 0
                    ),
                }
            ),
        )
        log.info("worker.health_endpoint", port=server.server_port)
    threading.Thread(
        target=_watchdog, args=(liveness_timeout_s, stopper), name="watchdog", daemon=True
    ).start()
    worker.start()
    # Celery exits 0 after a cold or hard shutdown; a node that was stuck, or that
    # abandoned jobs in hand, must say so.
    code = int(worker.exitcode or 0)
    if stopper.unhealthy:
        code = EXIT_UNHEALTHY
    elif stopper.forced:
        code = code or EXIT_FORCED
    elif stopper.recycled is not None:
        code = EXIT_RECYCLED
    # What this node cost in AWS requests, by action (benchmarks and tests read it).
    log.info(
        "worker.stopped",
        pool=pool,
        exit_code=code,
        recycled=stopper.recycled,
        aws_requests=aws.request_counts(),
    )
    return code


def _health(liveness_timeout_s: float) -> tuple[bool, dict[str, object]]:
    age_s = LIVENESS.age_s()
    return age_s <= liveness_timeout_s, {"last_poll_age_s": round(age_s, 3)}
