"""OpenTelemetry traces: the one module that imports ``opentelemetry`` (the ``otel`` extra).

Tracing is on when the standard variables ask for an exporter
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_TRACES_EXPORTER``, see :func:`infra.settings.otel_variables`); the SDK
reads every other ``OTEL_*`` variable itself (service name, batch schedule,
headers, sampler). Off, no OpenTelemetry module is ever imported and every
helper here is a no-op that returns :data:`NOOP`.

The provider is set up lazily, by the first span of a process: a prefork pool's
child makes its own after the fork (the SDK also re-arms a batch processor
inherited through a fork). ``OTEL_PROPAGATORS`` naming ``xray`` selects the AWS
X-Ray id generator (trace ids X-Ray accepts); incoming requests are read with
the global propagator (W3C and/or X-Ray headers), while the envelope always
carries a W3C ``traceparent``.

Spans (docs/observability.md lists them with their attributes): the API
request (server), each SNS publish (producer, messaging semantic conventions),
each job attempt (consumer, child of the envelope's ``traceparent``), and every
boto3 call through the botocore instrumentation.
"""

# Imports inside functions are the point (nothing of OTel loads when tracing is off);
# the tracer and service name are per-process state.
# ruff: noqa: PLC0415, PLW0603

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from infra.settings import OTEL_ENABLING_VARIABLES, otel_variables

__all__ = [
    "NOOP",
    "SpanHandle",
    "attached",
    "attempt_span",
    "capture",
    "configure",
    "enabled",
    "flush",
    "publish_span",
    "server_span",
]

_lock = threading.Lock()
_service_name = "conveyor"
_tracer: Any = None


@functools.cache
def enabled() -> bool:
    """Whether the ``OTEL_*`` variables ask for traces (and the SDK is not disabled).

    Read once per process: the environment of a running process does not change.
    """
    variables = otel_variables()
    if variables.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if variables.get("OTEL_TRACES_EXPORTER", "").lower() == "none":
        return False
    return any(name in variables for name in OTEL_ENABLING_VARIABLES)


def configure(service_name: str) -> None:
    """The ``service.name`` of this process's spans unless ``OTEL_SERVICE_NAME`` says one."""
    global _service_name
    _service_name = service_name


class SpanHandle:
    """A started span (or nothing, when tracing is off): attributes, outcome, its context."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def set(self, **attributes: str | int | float | bool | None) -> None:
        """Set attributes (``messaging_system`` is ``messaging.system``; None skips one)."""
        if self._span is None:
            return
        for key, value in attributes.items():
            if value is not None:
                self._span.set_attribute(key.replace("__", "."), value)

    def fail(self, description: str) -> None:
        """Mark the span as an error (status ERROR with ``description``)."""
        if self._span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self._span.set_status(Status(StatusCode.ERROR, description))

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` naming this span (None when tracing is off)."""
        if self._span is None:
            return None
        ctx = self._span.get_span_context()
        if not ctx.is_valid:
            return None
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


#: What every helper returns when tracing is off.
NOOP = SpanHandle()


def _build_tracer() -> Any:
    from opentelemetry import trace
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    variables = otel_variables()
    id_generator = None
    if "xray" in variables.get("OTEL_PROPAGATORS", "").lower():
        from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator

        id_generator = AwsXRayIdGenerator()
    # Resource.create() adds OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES over ours.
    resource = Resource.create({SERVICE_NAME: _service_name})
    provider = TracerProvider(resource=resource, id_generator=id_generator)
    exporters = [
        e.strip().lower() for e in variables.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
    ]
    for name in exporters:
        exporter: SpanExporter
        if name == "console":
            exporter = ConsoleSpanExporter()
        else:  # otlp (http/protobuf: the exporter of the extra)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    BotocoreInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    return provider.get_tracer("conveyor")


def _get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        with _lock:
            if _tracer is None:
                _tracer = _build_tracer()
    return _tracer


def flush(timeout_s: float = 5.0) -> None:
    """Export the spans still queued (a Lambda invocation's end, a pool child's exit)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(int(timeout_s * 1000))


def _w3c_context(traceparent: str | None) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not traceparent:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def _has_active_span() -> bool:
    from opentelemetry import trace

    return bool(trace.get_current_span().get_span_context().is_valid)


@contextmanager
def server_span(method: str, path: str, headers: Mapping[str, str]) -> Iterator[SpanHandle]:
    """The API request's server span, child of the client's ``traceparent`` (or X-Ray header)."""
    if not enabled():
        yield NOOP
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    tracer = _get_tracer()
    parent = propagate.extract(dict(headers))
    with tracer.start_as_current_span(
        f"{method} {path}", context=parent, kind=SpanKind.SERVER
    ) as span:
        handle = SpanHandle(span)
        handle.set(http__request__method=method, url__path=path)
        yield handle


@contextmanager
def publish_span(
    topic_name: str,
    topic_arn: str,
    *,
    batch_size: int,
    fallback_traceparent: str | None = None,
) -> Iterator[SpanHandle]:
    """A producer span for one SNS Publish/PublishBatch call.

    Its parent is the current span (the API request); without one (the scheduler,
    a script) the ``fallback_traceparent`` of the envelope, so the job keeps the
    trace its envelope and ledger name.
    """
    if not enabled():
        yield NOOP
        return
    from opentelemetry.trace import SpanKind

    tracer = _get_tracer()
    parent = None if _has_active_span() else _w3c_context(fallback_traceparent)
    with tracer.start_as_current_span(
        f"publish {topic_name}", context=parent, kind=SpanKind.PRODUCER
    ) as span:
        handle = SpanHandle(span)
        handle.set(
            messaging__system="aws_sns",
            messaging__operation__type="publish",
            messaging__destination__name=topic_name,
            messaging__batch__message_count=batch_size if batch_size > 1 else None,
            aws__sns__topic__arn=topic_arn,
        )
        yield handle


@contextmanager
def attempt_span(
    *,
    queue: str,
    attempt: int,
    job_id: str | None,
    job_type: str | None,
    traceparent: str | None,
    redrives: int = 0,
) -> Iterator[SpanHandle]:
    """A consumer span for one attempt at a job, child of the envelope's ``traceparent``.

    A redriven job (``redrives`` > 0) starts a new trace linked to the original one.
    """
    if not enabled():
        yield NOOP
        return
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind

    tracer = _get_tracer()
    original = _w3c_context(traceparent)
    links: Sequence[Any] = ()
    parent = original
    if redrives > 0 and original is not None:
        linked = trace.get_current_span(original).get_span_context()
        links = [Link(linked, {"conveyor.link": "redrive"})]
        parent = trace.set_span_in_context(trace.INVALID_SPAN)
    with tracer.start_as_current_span(
        f"process {job_type or 'unknown'}", context=parent, kind=SpanKind.CONSUMER, links=links
    ) as span:
        handle = SpanHandle(span)
        handle.set(
            messaging__system="aws_sqs",
            messaging__operation__type="process",
            messaging__destination__name=queue,
            messaging__message__id=job_id,
            conveyor__job__id=job_id,
            conveyor__job__type=job_type,
            conveyor__queue=queue,
            conveyor__attempt=attempt,
            conveyor__redrives=redrives or None,
        )
        yield handle


def capture() -> Any:
    """The current trace context, to carry into a thread pool (None when tracing is off)."""
    if not enabled():
        return None
    from opentelemetry import context

    return context.get_current()


@contextmanager
def attached(ctx: Any) -> Iterator[None]:
    """Run the block in ``ctx`` (from :func:`capture`; None: as is)."""
    if ctx is None:
        yield
        return
    from opentelemetry import context

    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)
