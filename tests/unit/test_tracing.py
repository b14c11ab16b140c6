"""infra/tracing.py: off, no OpenTelemetry SDK code loads and every helper is a no-op; on, spans
carry the envelope's trace, X-Ray ids when asked, and a redrive starts a linked trace.

Each case runs in a fresh interpreter: whether tracing is on is decided once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests import REPO

OFF = """
import json, sys
from infra import tracing
import workers.runner, workers.idempotency, workers.lambda_adapter, producers.publisher
with tracing.publish_span("t", "arn", batch_size=1) as span:
    span.set(messaging__message__id="m")
    publish = span.traceparent()
with tracing.attempt_span(queue="q", attempt=1, job_id="j", job_type="t", traceparent=None) as a:
    a.fail("x")
worker_modules = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
from infra.topology import load_topology
from producers.app import create_app
create_app(load_topology("tests/fixtures/producer.yaml"))
api_modules = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
print("RESULT " + json.dumps({"enabled": tracing.enabled(), "publish": publish,
                  "worker": worker_modules, "api": api_modules}))
"""

ON = """
import json
from infra import tracing
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
exporter = InMemorySpanExporter()
tracer = tracing._get_tracer()
from opentelemetry import trace
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
with tracing.publish_span("topic", "arn:t", batch_size=3, fallback_traceparent=parent) as p:
    published = p.traceparent()
with tracing.attempt_span(
    queue="q", attempt=2, job_id="j1", job_type="t", traceparent=published
) as a:
    a.set(conveyor__outcome="retry", conveyor__reason="ValueError")
    a.fail("retry: boom")
with tracing.attempt_span(queue="q", attempt=1, job_id="j1", job_type="t", traceparent=published,
                          redrives=1):
    pass
with tracing.publish_span("other", "arn:o", batch_size=1) as fresh:
    new_trace = fresh.traceparent()
spans = {s.name + ("/redrive" if s.links else ""): s for s in exporter.get_finished_spans()}
def hexid(n, w): return format(n, "0%dx" % w)
out = {}
for name, s in spans.items():
    out[name] = {
        "trace": hexid(s.context.trace_id, 32),
        "parent": hexid(s.parent.span_id, 16) if s.parent else None,
        "span": hexid(s.context.span_id, 16),
        "attrs": dict(s.attributes),
        "kind": s.kind.name,
        "error": s.status.status_code.name,
        "links": [hexid(l.context.trace_id, 32) for l in s.links],
    }
print("RESULT " + json.dumps({"spans": out, "published": published, "new": new_trace}))
"""


def _run(code: str, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**environ, **env, "AWS_DEFAULT_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The console exporter prints spans too: the answer is the marked line.
    [line] = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    loaded: dict[str, object] = json.loads(line.removeprefix("RESULT "))
    return loaded


def test_off_nothing_of_opentelemetry_loads_and_helpers_do_nothing() -> None:
    found = _run(OFF)
    assert found["enabled"] is False
    assert found["publish"] is None
    # The worker side loads no OpenTelemetry module at all.
    assert found["worker"] == []
    # FastAPI itself imports the (no-op) OpenTelemetry API; never the SDK, an exporter
    # or an instrumentation.
    api = found["api"]
    assert isinstance(api, list)
    assert not [m for m in api if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]
    assert not [m for m in api if m.startswith("opentelemetry.instrumentation")]


def test_on_spans_follow_the_envelope_and_a_redrive_links_the_original_trace() -> None:
    found = _run(ON, OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY="60000")
    spans = found["spans"]
    assert isinstance(spans, dict)
    publish = spans["publish topic"]
    # No current span: the publish span continues the envelope's trace.
    assert publish["trace"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert publish["parent"] == "00f067aa0ba902b7"
    assert publish["kind"] == "PRODUCER"
    assert publish["attrs"]["messaging.system"] == "aws_sns"
    assert publish["attrs"]["messaging.batch.message_count"] == 3
    assert found["published"] == f"00-{publish['trace']}-{publish['span']}-01"
    attempt = spans["process t"]
    assert attempt["kind"] == "CONSUMER"
    assert attempt["parent"] == publish["span"]
    assert attempt["trace"] == publish["trace"]
    assert attempt["error"] == "ERROR"
    assert attempt["attrs"]["conveyor.attempt"] == 2
    assert attempt["attrs"]["conveyor.reason"] == "ValueError"
    redriven = spans["process t/redrive"]
    assert redriven["trace"] != publish["trace"]
    assert redriven["parent"] is None
    assert redriven["links"] == [publish["trace"]]


def test_xray_propagators_select_xray_trace_ids() -> None:
    found = _run(ON, OTEL_TRACES_EXPORTER="console", OTEL_PROPAGATORS="tracecontext,xray")
    new = found["new"]
    assert isinstance(new, str)
    # An X-Ray trace id starts with the epoch seconds of its start (8 hex digits).
    started_s = int(new.split("-")[1][:8], 16)
    found_plain = _run(ON, OTEL_TRACES_EXPORTER="console")
    plain = found_plain["new"]
    assert isinstance(plain, str)
    a_day_s = 86_400
    assert abs(started_s - time.time()) < a_day_s
    # A random (W3C) trace id's first digits are no clock.
    assert abs(int(plain.split("-")[1][:8], 16) - time.time()) > a_day_s


LAMBDA = """
import json
from infra import tracing
from infra.envelope import encode, make_envelope
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.unit.test_lambda_adapter import lambda_record
from workers.lambda_adapter import lambda_handler
exporter = InMemorySpanExporter()
tracing._get_tracer()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
envelope = make_envelope("test.record", {"label": "hi"}, traceparent=parent)
response = lambda_handler({"Records": [lambda_record("ok", body=encode(envelope))]}, None)
[span] = exporter.get_finished_spans()
print("RESULT " + json.dumps({
    "response": response,
    "trace": format(span.context.trace_id, "032x"),
    "parent": format(span.parent.span_id, "016x"),
    "kind": span.kind.name,
    "attrs": dict(span.attributes),
    "job_id": envelope.id,
}))
"""


def test_the_lambda_adapter_traces_each_attempt_as_a_child_of_the_envelope(
    tmp_path: Path,
) -> None:
    found = _run(
        LAMBDA,
        OTEL_TRACES_EXPORTER="console",
        CONVEYOR_QUEUES_FILE=str(REPO / "tests" / "fixtures" / "pipeline.yaml"),
        CONVEYOR_ENVIRONMENT="unit",
        CONVEYOR_TEST_OUTBOX=str(tmp_path),
    )
    assert found["response"] == {"batchItemFailures": []}
    assert found["trace"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert found["parent"] == "00f067aa0ba902b7"
    assert found["kind"] == "CONSUMER"
    attrs = found["attrs"]
    assert isinstance(attrs, dict)
    assert attrs["conveyor.job.id"] == found["job_id"]
    assert attrs["conveyor.outcome"] == "succeeded"
    assert attrs["conveyor.attempt"] == 1
