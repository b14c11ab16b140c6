"""The CloudFormation export's alarms and dashboard on the job metrics (CloudWatch EMF).

Workers and the Lambda adapter write the job metrics of :mod:`infra.job_metrics`
as EMF lines when ``CONVEYOR_METRICS`` includes ``emf`` (the default on Lambda;
ECS tasks need the CloudWatch agent beside them to turn stdout into metrics).
This module renders, beside the SQS alarms of :mod:`infra.export.cloudformation`:

- per queue, an alarm on the dead-letter rate (the share of attempts started in
  :data:`RATE_PERIOD_S` that were dead-lettered, above :data:`DEAD_LETTER_RATE_ALARM`)
  and one on the queue lag (its p90 above :data:`QUEUE_LAG_ALARM_S`);
- one ``AWS::CloudWatch::Dashboard`` per environment: queue depth and oldest
  message (SQS's own metrics), job outcomes, handler duration and queue lag.

Alarms read the per-queue dimension set (:data:`infra.job_metrics.QUEUE_DIMENSIONS`)
in the default namespace: a CloudWatch alarm matches dimensions exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from infra import job_metrics as names
from infra.topology import Topology

DEAD_LETTER_RATE_ALARM = names.DEAD_LETTER_RATE_ALARM
QUEUE_LAG_ALARM_S = names.QUEUE_LAG_ALARM_S
QUEUE_LAG_STATISTIC = f"p{names.QUEUE_LAG_QUANTILE * 100:g}"
#: The period of both alarms (seconds).
RATE_PERIOD_S = names.ALERT_WINDOW_S
#: The ``Fn::Sub`` variable of the environment (the template's parameter).
_ENV = "${EnvironmentName}"


def queue_dimensions(topology: Topology, queue: str) -> list[dict[str, Any]]:
    """The per-queue dimensions the EMF writer emits, as an alarm's ``Dimensions``."""
    values: dict[str, Any] = {
        names.PROJECT: topology.project,
        names.ENVIRONMENT: {"Ref": "EnvironmentName"},
        names.QUEUE: queue,
    }
    return [{"Name": n, "Value": values[n]} for n in names.QUEUE_DIMENSIONS]


def job_metric_alarms(topology: Topology, name: Callable[[str], Any]) -> dict[str, dict[str, Any]]:
    """Alarm resources by ``(queue, what)``: the dead-letter rate and the queue lag.

    ``name(suffix)`` is the builder's ``<project>-${EnvironmentName}-<suffix>``.
    """
    alarms: dict[str, dict[str, Any]] = {}
    for queue in topology.queues:
        alarms[f"{queue}/dead-letter-rate"] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": name(f"{queue}-dead-letter-rate"),
                "AlarmDescription": (
                    f"More than {DEAD_LETTER_RATE_ALARM:.0%} of the attempts started on queue"
                    f" {queue} were dead-lettered (Average of {names.DEAD_LETTERED})"
                ),
                "Namespace": names.DEFAULT_NAMESPACE,
                "MetricName": names.DEAD_LETTERED,
                "Dimensions": queue_dimensions(topology, queue),
                # 0 or 1 per attempt: the Average is the share of attempts dead-lettered.
                "Statistic": "Average",
                "Period": RATE_PERIOD_S,
                "EvaluationPeriods": 1,
                "Threshold": DEAD_LETTER_RATE_ALARM,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
            },
        }
        alarms[f"{queue}/queue-lag"] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": name(f"{queue}-queue-lag"),
                "AlarmDescription": (
                    f"{names.QUEUE_LAG} {QUEUE_LAG_STATISTIC} above {QUEUE_LAG_ALARM_S} s"
                    f" (queue {queue}): jobs wait too long before they start"
                ),
                "Namespace": names.DEFAULT_NAMESPACE,
                "MetricName": names.QUEUE_LAG,
                "Dimensions": queue_dimensions(topology, queue),
                "ExtendedStatistic": QUEUE_LAG_STATISTIC,
                "Period": RATE_PERIOD_S,
                "EvaluationPeriods": 1,
                "Threshold": QUEUE_LAG_ALARM_S,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
            },
        }
    return alarms


def _job_metric(project: str, queue: str, metric: str, stat: str) -> list[Any]:
    dims = {names.PROJECT: project, names.ENVIRONMENT: _ENV, names.QUEUE: queue}
    row: list[Any] = [names.DEFAULT_NAMESPACE, metric]
    for dimension in names.QUEUE_DIMENSIONS:
        row += [dimension, dims[dimension]]
    return [*row, {"stat": stat, "label": f"{queue} {metric} {stat}"}]


def _widget(title: str, metrics: list[list[Any]], y: int, x: int = 0) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "view": "timeSeries",
            "region": "${AWS::Region}",
            "period": 60,
            "metrics": metrics,
        },
    }


def dashboard_body(topology: Topology, queue_names: Mapping[str, tuple[str, str]]) -> str:
    """The dashboard's JSON body (with ``${…}`` for ``Fn::Sub``).

    ``queue_names`` maps a queue of queues.yaml to (its SQS name, its DLQ's name).
    """
    p = topology.project
    depth = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", n, {"label": label}]
        for q, pair in queue_names.items()
        for n, label in zip(pair, (q, f"{q} DLQ"), strict=True)
    ]
    age = [
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue_names[q][0], {"label": q}]
        for q in queue_names
    ]
    outcomes = [
        _job_metric(p, q, m, "Sum")
        for q in topology.queues
        for m in (names.STARTED, names.SUCCEEDED, names.RETRIED, names.DEAD_LETTERED)
    ]
    duration = [
        _job_metric(p, q, names.DURATION, s) for q in topology.queues for s in ("p50", "p99")
    ]
    lag = [_job_metric(p, q, names.QUEUE_LAG, QUEUE_LAG_STATISTIC) for q in topology.queues]
    widgets = [
        _widget("Queue depth (visible messages)", depth, 0),
        _widget("Oldest message (seconds)", age, 0, 12),
        _widget("Job outcomes (attempts)", outcomes, 6),
        _widget("Handler duration (seconds)", duration, 6, 12),
        _widget(f"Queue lag {QUEUE_LAG_STATISTIC} (seconds)", lag, 12),
    ]
    return json.dumps({"widgets": widgets}, separators=(",", ":"))


def dashboard(topology: Topology, queue_names: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """The environment's ``AWS::CloudWatch::Dashboard`` resource."""
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": {"Fn::Sub": f"{topology.project}-{_ENV}"},
            "DashboardBody": {"Fn::Sub": dashboard_body(topology, queue_names)},
        },
    }
