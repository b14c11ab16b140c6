"""The Kubernetes export's ``PrometheusRule``: the CloudWatch alarms' alerts, in PromQL.

The same two alerts per queue as :mod:`infra.export.cfn_metrics` (thresholds from
:mod:`infra.job_metrics`), on the Prometheus metrics of ``workers.metrics`` that
each worker's ``/metrics`` serves: the dead-letter rate and the p90 queue lag.
The rule is for the Prometheus Operator (``monitoring.coreos.com/v1``); scraping
the workers (a PodMonitor or ServiceMonitor) is the cluster's own business.
"""

from __future__ import annotations

from typing import Any

from infra import job_metrics as names
from infra.topology import Topology

#: Prometheus exposition names (a counter gets ``_total``, a histogram ``_bucket``).
STARTED_TOTAL = "conveyor_jobs_started_total"
DEAD_LETTERED_TOTAL = "conveyor_jobs_dead_lettered_total"
QUEUE_LAG_BUCKET = "conveyor_job_queue_lag_seconds_bucket"
#: Grouping: one alert per queue (and per namespace, when the scrape adds that label).
_BY = "namespace, queue"


def _window() -> str:
    return f"{names.ALERT_WINDOW_S // 60}m"


def dead_letter_rate_expr() -> str:
    """PromQL: the share of attempts dead-lettered per queue, above the threshold."""
    w = _window()
    return (
        f"sum by ({_BY}) (rate({DEAD_LETTERED_TOTAL}[{w}]))"
        f" / sum by ({_BY}) (rate({STARTED_TOTAL}[{w}]))"
        f" > {names.DEAD_LETTER_RATE_ALARM}"
    )


def queue_lag_expr() -> str:
    """PromQL: the p90 queue lag per queue, above the threshold."""
    return (
        f"histogram_quantile({names.QUEUE_LAG_QUANTILE},"
        f" sum by ({_BY}, le) (rate({QUEUE_LAG_BUCKET}[{_window()}])))"
        f" > {names.QUEUE_LAG_ALARM_S}"
    )


def prometheus_rule(topology: Topology, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """The ``PrometheusRule`` manifest of ``topology`` (``name``/``labels``: its metadata)."""
    extra = {"project": topology.project, "environment": topology.environment}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "groups": [
                {
                    "name": f"{name}.jobs",
                    "rules": [
                        {
                            "alert": "ConveyorDeadLetterRateHigh",
                            "expr": dead_letter_rate_expr(),
                            "for": "0m",
                            "labels": {"severity": "warning", **extra},
                            "annotations": {
                                "summary": "Jobs of queue {{ $labels.queue }} are dead-lettered",
                                "description": (
                                    f"More than {names.DEAD_LETTER_RATE_ALARM:.0%} of the"
                                    f" attempts started in {_window()} were dead-lettered."
                                ),
                            },
                        },
                        {
                            "alert": "ConveyorQueueLagHigh",
                            "expr": queue_lag_expr(),
                            "for": "0m",
                            "labels": {"severity": "warning", **extra},
                            "annotations": {
                                "summary": "Jobs of queue {{ $labels.queue }} start late",
                                "description": (
                                    f"The p{names.QUEUE_LAG_QUANTILE * 100:g} time from SQS"
                                    f" accepting a job to its start is above"
                                    f" {names.QUEUE_LAG_ALARM_S} s."
                                ),
                            },
                        },
                    ],
                }
            ]
        },
    }
