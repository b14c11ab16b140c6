"""A role's small HTTP endpoint: ``/healthz`` and ``/metrics``, served in a daemon thread.

Worker nodes and the scheduler serve it (the producer API has FastAPI routes of its
own). The standard library's server: a probe every few seconds needs no framework, and
a worker node must not import one (see docs/architecture.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: ``(healthy, details)``: 200 ``{"status": "ok", …details}`` or 503 ``unhealthy``.
HealthCheck = Callable[[], tuple[bool, dict[str, object]]]
#: ``(body, content type)`` of the Prometheus exposition.
Metrics = Callable[[], tuple[bytes, str]]


def serve_http_health(
    host: str, port: int, *, healthy: HealthCheck, metrics: Metrics
) -> ThreadingHTTPServer:
    """Serve in a daemon thread; returns the server (``server_port`` is the bound port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                ok, details = healthy()
                body = json.dumps({"status": "ok" if ok else "unhealthy", **details}).encode()
                self._send(200 if ok else 503, body, "application/json")
            elif self.path == "/metrics":
                body, content_type = metrics()
                self._send(200, body, content_type)
            else:
                self._send(404, b'{"detail": "not found"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds would drown the role's own events

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
