"""CloudWatch Embedded Metric Format (EMF): the job metrics as JSON lines on stdout.

On AWS Lambda (and on ECS with the awslogs driver, or anywhere the CloudWatch
agent reads the output) a log line in EMF becomes CloudWatch metrics on
ingestion: no agent to scrape, no PutMetricData call on the job's path. This
module owns the encoder (:func:`encode`, one document from metric values and
dimension sets) and the hook (:class:`EmfMetrics`) that writes the metrics
``workers.hooks.record_metrics`` counts for Prometheus, by the names of
:mod:`infra.job_metrics`.

One line per job attempt, not an aggregate per flush: jobs run in prefork
children that billiard ends with ``os._exit`` and in Lambda invocations that are
frozen once they return, so a buffer would need a flush at every one of those
exits or lose its counts; a line per attempt is stateless, and CloudWatch adds
the values up on ingestion. The price is a log line (~700 bytes) per attempt.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from infra import job_metrics as names
from workers.hooks import Job, Proceed
from workers.outcome import Outcome

#: EMF's limits (the specification): dimensions per set, metrics per directive, values per metric.
MAX_DIMENSIONS = 30
MAX_METRICS = 100
MAX_VALUES = 100


@dataclass(frozen=True)
class Directive:
    """One entry of ``_aws.CloudWatchMetrics``: metrics written under each dimension set."""

    dimension_sets: Sequence[Sequence[str]]
    #: Metric name -> unit (a CloudWatch unit name: ``Count``, ``Seconds`` …).
    units: Mapping[str, str]


def encode(
    namespace: str,
    directives: Sequence[Directive],
    dimensions: Mapping[str, str],
    values: Mapping[str, float],
    *,
    timestamp_ms: int | None = None,
) -> str:
    """One EMF document as a JSON line (no newline).

    ``dimensions`` and ``values`` become root members (EMF resolves names there);
    a directive's metric without a value is left out of that line, and so is a
    directive naming a dimension ``dimensions`` lacks (the dead-letter reason).
    """
    root: dict[str, object] = {}
    entries = []
    for directive in directives:
        if any(d not in dimensions for s in directive.dimension_sets for d in s):
            continue
        metrics = [{"Name": n, "Unit": u} for n, u in directive.units.items() if n in values]
        if not metrics:
            continue
        if len(metrics) > MAX_METRICS or any(
            len(s) > MAX_DIMENSIONS for s in directive.dimension_sets
        ):
            raise ValueError("an EMF directive exceeds the specification's limits")
        entries.append(
            {
                "Namespace": namespace,
                "Dimensions": [list(s) for s in directive.dimension_sets],
                "Metrics": metrics,
            }
        )
    root["_aws"] = {
        "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        "CloudWatchMetrics": entries,
    }
    root.update(dimensions)
    root.update(values)
    return json.dumps(root, separators=(",", ":"))


_COUNTS = {
    names.STARTED: names.COUNT,
    names.SUCCEEDED: names.COUNT,
    names.FAILED: names.COUNT,
    names.RETRIED: names.COUNT,
    names.CANCELLED: names.COUNT,
    names.DEAD_LETTERED: names.COUNT,
}
#: Every line: the attempt's counts (0 or 1) and its handler time, per queue and per
#: queue/pool/type. Dead-lettered is 0 or 1 on every line, so its Average per queue is
#: the dead-letter rate the exported alarm watches (no metric math needed).
JOB = Directive(
    (names.QUEUE_DIMENSIONS, names.JOB_DIMENSIONS),
    {**_COUNTS, names.DURATION: names.SECONDS},
)
#: Queue lag, per queue only (as the Prometheus histogram).
LAG = Directive((names.QUEUE_DIMENSIONS,), {names.QUEUE_LAG: names.SECONDS})
#: A dead letter's detail, by reason too (only on a dead letter's line: the reason is
#: a dimension of this metric alone).
DEAD_LETTER = Directive((names.DEAD_LETTER_DIMENSIONS,), {names.DEAD_LETTERED: names.COUNT})
DIRECTIVES = (JOB, LAG, DEAD_LETTER)


@dataclass
class EmfMetrics:
    """A job hook writing one EMF line per attempt (see the module doc).

    ``pools`` maps a queue to the pool of queues.yaml that consumes it.
    """

    project: str
    environment: str
    pools: Mapping[str, str]
    namespace: str = names.DEFAULT_NAMESPACE
    #: Where lines go: stdout unless a test says otherwise (read at each write).
    stream: IO[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __call__(self, job: Job, proceed: Proceed) -> Outcome:
        """Run the job, then write its line (whatever the outcome)."""
        values: dict[str, float] = dict.fromkeys(_COUNTS, 0)
        values[names.STARTED] = 1
        if job.sent_at_s is not None:
            values[names.QUEUE_LAG] = max(0.0, time.time() - job.sent_at_s)
        started = time.perf_counter()
        outcome = proceed()
        dimensions = {
            names.PROJECT: self.project,
            names.ENVIRONMENT: self.environment,
            names.QUEUE: job.queue,
            names.POOL: self.pools.get(job.queue, names.NO_POOL),
            names.JOB_TYPE: job.job_type or "unknown",
        }
        if outcome.extra.get("cancelled"):  # deleted unrun: no handler time, not a success
            values[names.CANCELLED] = 1
        else:
            values[names.DURATION] = time.perf_counter() - started
            if outcome.kind == "succeeded":
                values[names.SUCCEEDED] = 1
            else:
                values[names.FAILED] = 1
                if outcome.kind == "retry":
                    values[names.RETRIED] = 1
                else:
                    values[names.DEAD_LETTERED] = 1
                    failure = outcome.failure
                    dimensions[names.REASON] = failure.reason if failure else "unknown"
        self.write(encode(self.namespace, DIRECTIVES, dimensions, values))
        return outcome

    def write(self, line: str) -> None:
        """Write one line at once (threads of a pool share the stream)."""
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()
