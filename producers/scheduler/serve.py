"""Running the scheduler role in the foreground: store, publisher, loop, health, SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType

from infra.aws.names import timers_table_name
from infra.health import serve_http_health
from infra.logs import get_logger
from infra.settings import SchedulingSettings
from infra.timers import TimerStore
from infra.topology import Topology
from producers.scheduler import metrics
from producers.scheduler.loop import Scheduler, TickSource
from producers.scheduler.publish import DuePublisher

log = get_logger("conveyor.scheduler")


def build_scheduler(
    topology: Topology,
    settings: SchedulingSettings,
    *,
    tick_sources: Sequence[TickSource] = (),
    publisher: DuePublisher | None = None,
) -> Scheduler:
    """A scheduler for ``topology``'s timer table, publishing as the API does.

    ``publisher``: the one the tick sources publish through too (default: a new one).
    """
    store = TimerStore(timers_table_name(topology), retention_s=settings.timer_retention_s)
    if publisher is None:
        publisher = DuePublisher.for_topology(topology, publish_threads=settings.claim_threads)
    return Scheduler(store, publisher, settings, tick_sources=tick_sources)


def run_scheduler(
    topology: Topology,
    settings: SchedulingSettings,
    *,
    health_port: int | None = None,
    tick_sources: Sequence[TickSource] = (),
    publisher: DuePublisher | None = None,
) -> int:
    """Run until SIGTERM or SIGINT (the turn in progress ends first); the exit code.

    ``health_port``: serve ``/healthz`` and ``/metrics`` there (0: any free port; the
    bound port is logged); None: not served. ``tick_sources`` run every turn (the cron
    schedules' ``fire_due``), publishing through ``publisher`` (built by the caller
    with :meth:`DuePublisher.for_topology`, so both share it).
    """
    scheduler = build_scheduler(topology, settings, tick_sources=tick_sources, publisher=publisher)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("scheduler.stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = None
    if health_port is not None:
        server = serve_http_health(
            settings.health_host,
            health_port,
            healthy=scheduler.healthy,
            metrics=metrics.exposition,
        )
        log.info(
            "scheduler.health_serving",
            url=f"http://{settings.health_host}:{server.server_port}/healthz",
        )
    try:
        scheduler.run(stop)
    finally:
        if server is not None:
            server.shutdown()
        scheduler.close()
        scheduler.publisher.close()
    return 0
