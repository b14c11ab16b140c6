"""The names of the CloudWatch job metrics: what the EMF writer emits and the exports watch.

``workers.emf`` writes these metrics (CloudWatch Embedded Metric Format) and
``infra.export.cloudformation`` alarms on them and charts them: both read the
names here, so an alarm cannot watch a metric nobody writes. The Prometheus
names stay in ``workers.metrics``.

Dimensions are kept low-cardinality: project, environment, queue, pool and job
type (the reason only on :data:`DEAD_LETTERED`). Every metric is also written
per queue alone (:data:`QUEUE_DIMENSIONS`), which is what the alarms watch:
CloudWatch alarms need the exact dimension set a metric was written with. The
counts are 0 or 1 on every attempt's line, so a count's Average is a rate.
"""

from __future__ import annotations

from infra.settings import DEFAULT_METRICS_NAMESPACE

#: The namespace when ``CONVEYOR_METRICS_NAMESPACE`` is not set.
DEFAULT_NAMESPACE = DEFAULT_METRICS_NAMESPACE

# -- dimension names -------------------------------------------------------------------
PROJECT = "Project"
ENVIRONMENT = "Environment"
QUEUE = "Queue"
POOL = "Pool"
JOB_TYPE = "JobType"
REASON = "Reason"

#: Per queue: what the alarms and the dashboard read.
QUEUE_DIMENSIONS: tuple[str, ...] = (PROJECT, ENVIRONMENT, QUEUE)
#: Per queue, pool and job type.
JOB_DIMENSIONS: tuple[str, ...] = (*QUEUE_DIMENSIONS, POOL, JOB_TYPE)
#: The dead-letter metric's detail: also by reason.
DEAD_LETTER_DIMENSIONS: tuple[str, ...] = (*JOB_DIMENSIONS, REASON)

# -- metric names (unit) ---------------------------------------------------------------
STARTED = "JobsStarted"
SUCCEEDED = "JobsSucceeded"
FAILED = "JobsFailed"
RETRIED = "JobsRetried"
CANCELLED = "JobsCancelled"
DEAD_LETTERED = "JobsDeadLettered"
DURATION = "JobDuration"
QUEUE_LAG = "JobQueueLag"

COUNT = "Count"
SECONDS = "Seconds"

#: Pool of a queue no pool of queues.yaml consumes (e.g. one only a Lambda function reads).
NO_POOL = "none"

# -- the alerts both exports raise (CloudWatch alarms, a PrometheusRule) -------------------
#: The dead-letter rate alert fires above this share of the attempts started on a queue.
DEAD_LETTER_RATE_ALARM = 0.05
#: The queue lag alert fires when a queue's p90 lag is above this (seconds).
QUEUE_LAG_ALARM_S = 300
QUEUE_LAG_QUANTILE = 0.9
#: The window both alerts look at (seconds).
ALERT_WINDOW_S = 300
