"""End to end: one OpenTelemetry trace per job, from the client's ``traceparent`` to the DLQ.

The API and a prefork worker pool run as real processes with the ``otel`` extra and
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a small OTLP/HTTP receiver in this test
(the official ``opentelemetry-proto`` messages decode what they export). A flaky job
(fails once, then succeeds) and a failing one (fails every attempt, then is
dead-lettered) are each enqueued with their own client ``traceparent``; each must
come back as one trace: API server span → publish span → attempt spans.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from conveyor.system import LocalSystem, local_system
from infra.topology import load_topology
from tests import REPO
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

CLIENT_SPAN_ID = "00f067aa0ba902b7"


@dataclass(frozen=True)
class Span:
    """A received span, ids as hex."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    error: bool


class Receiver:
    """An OTLP/HTTP trace receiver on a loopback port (``POST /v1/traces``, protobuf)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            error=span.status.code == 2,  # STATUS_CODE_ERROR
                        )
                    )
        with self._lock:
            self.spans.extend(spans)

    def of_trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def system(
    aws_env: AwsEnv, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalSystem]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    queues_file = REPO / "tests" / "fixtures" / "pipeline.yaml"
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(queues_file))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # worker processes import tests.jobs
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # milliseconds
    with local_system(load_topology(queues_file), use_emulator=False, log_dir=tmp_path) as running:
        yield running


def _enqueue(system: LocalSystem, job_type: str, payload: dict[str, Any], trace_id: str) -> str:
    response = httpx.post(
        f"{system.api_url}/v1/jobs/{job_type}",
        json=payload,
        headers={"traceparent": f"00-{trace_id}-{CLIENT_SPAN_ID}-01"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _attempts(spans: list[Span], job_id: str) -> list[Span]:
    found = [
        s
        for s in spans
        if s.kind == ProtoSpan.SPAN_KIND_CONSUMER and s.attributes.get("conveyor.job.id") == job_id
    ]
    return sorted(found, key=lambda s: int(s.attributes["conveyor.attempt"]))


def _trace(receiver: Receiver, trace_id: str, job_id: str, attempts: int) -> list[Span]:
    """The trace's spans once its ``attempts`` attempt spans arrived."""
    return eventually(
        lambda: (
            (spans := receiver.of_trace(trace_id))
            and len(_attempts(spans, job_id)) >= attempts
            and spans
        ),
        what=f"{attempts} attempt spans of job {job_id} in trace {trace_id}",
        timeout_s=90,
    )


def _check_request_and_publish(spans: list[Span], job_type: str) -> Span:
    """The API's server span is the client's child; the publish span the server span's."""
    servers = [s for s in spans if s.kind == ProtoSpan.SPAN_KIND_SERVER]
    assert len(servers) == 1, [(s.name, s.service, s.span_id, s.parent_span_id) for s in spans]
    [server] = servers
    assert server.service == "conveyor-api"
    assert server.parent_span_id == CLIENT_SPAN_ID
    assert server.name == f"POST /v1/jobs/{job_type}"
    assert server.attributes["http.response.status_code"] == 202
    # Ours: not the botocore instrumentation's SNS span (a producer too, with rpc.*).
    [publish] = [
        s
        for s in spans
        if s.kind == ProtoSpan.SPAN_KIND_PRODUCER and "rpc.service" not in s.attributes
    ]
    assert publish.parent_span_id == server.span_id
    assert publish.attributes["messaging.system"] == "aws_sns"
    assert publish.attributes["messaging.destination.name"].endswith("jobs")
    assert publish.attributes["messaging.message.id"]
    # The SNS call itself, through the botocore instrumentation, under the publish span.
    assert any(
        s.parent_span_id == publish.span_id and s.attributes.get("rpc.service") == "SNS"
        for s in spans
    )
    return publish


def test_each_job_is_one_trace_from_the_client_to_its_last_attempt(
    system: LocalSystem, receiver: Receiver
) -> None:
    flaky_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    failing_trace = "5cf92f3577b34da6a3ce929d0e0e4737"
    flaky = _enqueue(system, "test.flaky", {"succeed_on_attempt": 2}, flaky_trace)
    failing = _enqueue(system, "test.fail", {"label": "doomed"}, failing_trace)

    spans = _trace(receiver, flaky_trace, flaky, attempts=2)
    publish = _check_request_and_publish(spans, "test.flaky")
    attempts = _attempts(spans, flaky)
    assert [a.attributes["conveyor.attempt"] for a in attempts] == [1, 2]
    assert [a.attributes["conveyor.outcome"] for a in attempts] == ["retry", "succeeded"]
    assert attempts[0].attributes["conveyor.reason"] == "ConnectionError"
    assert attempts[0].error
    assert not attempts[1].error
    for attempt in attempts:
        # Each attempt is a child of the publish span: the envelope's traceparent names it.
        assert attempt.parent_span_id == publish.span_id
        assert attempt.service == "conveyor-worker"
        assert attempt.attributes["conveyor.job.type"] == "test.flaky"
        assert attempt.attributes["conveyor.queue"] == "work"
        assert attempt.attributes["messaging.destination.name"] == "work"

    spans = _trace(receiver, failing_trace, failing, attempts=3)
    publish = _check_request_and_publish(spans, "test.fail")
    attempts = _attempts(spans, failing)
    assert [a.attributes["conveyor.outcome"] for a in attempts] == [
        "retry",
        "retry",
        "dead_letter",
    ]
    assert attempts[-1].attributes["conveyor.reason"] == "attempts_exhausted"
    assert all(a.error and a.parent_span_id == publish.span_id for a in attempts)
    # Nothing of either job strayed into another trace.
    assert {s.trace_id for s in receiver.spans if s.attributes.get("conveyor.job.id")} == {
        flaky_trace,
        failing_trace,
    }
