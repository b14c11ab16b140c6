"""The scheduler's HTTP endpoint: ``/healthz`` (its loop turns) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_health(
    host: str,
    port: int,
    *,
    healthy: Callable[[], tuple[bool, dict[str, object]]],
    metrics: Callable[[], tuple[bytes, str]],
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
            return  # probes every few seconds would drown the scheduler's events

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
