"""Driver for Conveyor with tracing on: the ``conveyor`` driver, plus the ``OTEL_*`` variables.

The API and the worker export every span over OTLP/HTTP to a sink in the benchmark
process (it answers 200 and drops the spans, as a collector on the same host would
take them): what tracing costs the measured processes — spans, the botocore
instrumentation, the batch exporter — side by side with ``conveyor`` (tracing off).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.procs import Proc
from benchmarks.systems import conveyor
from benchmarks.systems.common import RunContext

NAME = "conveyor_otel"
enqueuer = conveyor.enqueuer
producer_env = conveyor.producer_env


class _Sink(BaseHTTPRequestHandler):
    #: Where the sink notes how many export requests and bytes it took (proof spans flowed).
    record: Path | None = None
    requests = 0
    bytes_in = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cls = type(self)
        cls.requests += 1
        cls.bytes_in += len(body)
        if cls.record is not None:
            cls.record.write_text(f"{cls.requests} export requests, {cls.bytes_in} bytes\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def setup(run: RunContext) -> dict[str, Any]:
    """Conveyor's set-up, and an OTLP sink on a loopback port (for the run's lifetime)."""
    config = conveyor.setup(run)
    _Sink.record = run.log_dir / "otlp-sink.txt"
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True, name="otlp-sink").start()
    config["otlp_endpoint"] = f"http://127.0.0.1:{sink.server_address[1]}"
    return config


def start(run: RunContext, config: dict[str, Any]) -> list[Proc]:
    """Conveyor's API and worker, exporting their spans to the sink."""
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": config["otlp_endpoint"],
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    return conveyor.start(replace(run, env={**run.env, **traced}), config)
