"""A node's HTTP endpoint: ``/healthz`` (liveness) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from http.server import ThreadingHTTPServer

from infra.health import HealthCheck, Metrics, serve_http_health
from infra.settings import load_settings


def serve_health(
    port: int,
    *,
    healthy: HealthCheck,
    metrics: Metrics,
    host: str | None = None,
) -> ThreadingHTTPServer:
    """Serve in a daemon thread; returns the server (``server_port`` is the bound port).

    ``host`` defaults to ``CONVEYOR_WORKER_HEALTH_HOST`` (loopback unless set: the
    metrics name queues and counts, and nothing off the machine needs them unless an
    orchestrator probes from outside, as in a container, which sets ``0.0.0.0``).
    """
    if host is None:
        host = load_settings().worker.worker_health_host
    return serve_http_health(host, port, healthy=healthy, metrics=metrics)
