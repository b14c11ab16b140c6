"""The exports' alarms and dashboards watch the job metrics the workers really write.

CloudFormation: each alarm and dashboard row on the EMF metrics names a
(namespace, metric, dimension set) that a line of :class:`workers.emf.EmfMetrics`
carries, with the values that line has for the queue. cfn-lint runs over the
whole template in tests/unit/test_export_cloudformation.py. Kubernetes: the
PrometheusRule's expressions name metrics ``workers.metrics`` defines.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conveyor.cli import app
from infra import job_metrics as names
from infra.export import cloudformation_template, kubernetes_manifests
from infra.export.cfn_metrics import DEAD_LETTER_RATE_ALARM, QUEUE_LAG_ALARM_S
from infra.failure import Failure
from infra.topology import Topology
from tests import REPO
from tests.unit.test_export_cloudformation import TOPOLOGIES
from workers.emf import EmfMetrics
from workers.hooks import Job
from workers.metrics import instruments
from workers.outcome import Outcome

Emitted = set[tuple[str, str, frozenset[tuple[str, str]]]]


def _failure(queue: str) -> Failure:
    return Failure("attempts_exhausted", "E", "e", 3, 3, queue, "w", None, "2026-01-01T00:00:00Z")


def emitted(topology: Topology) -> Emitted:
    """(namespace, metric, {(dimension, value)}) of every metric the writer emits for
    a success, a retry and a dead letter of a job on each queue."""
    out = io.StringIO()
    pools = {q: topology.pool_of_queue(q) or names.NO_POOL for q in topology.queues}
    hook = EmfMetrics(topology.project, topology.environment, pools, stream=out)
    for queue in topology.queues:
        job = Job(queue, 1, "j", "t", None, sent_at_s=time.time())
        for outcome in (
            Outcome("succeeded", queue, 1),
            Outcome("retry", queue, 1, delay_s=1),
            Outcome("dead_letter", queue, 1, failure=_failure(queue)),
        ):
            hook(job, lambda outcome=outcome: outcome)
    found: Emitted = set()
    for line in out.getvalue().splitlines():
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dims = frozenset((d, doc[d]) for d in dimension_set)
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"], dims))
    return found


def _resolve(value: Any, topology: Topology) -> Any:
    if value == {"Ref": "EnvironmentName"}:
        return topology.environment  # the parameter's default
    return value


def _job_metric_alarms(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"].get("Namespace") == names.DEFAULT_NAMESPACE
    ]


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_every_job_metric_alarm_watches_a_metric_the_writer_emits(name: str) -> None:
    topology = TOPOLOGIES[name]()
    template = cloudformation_template(topology)
    written = emitted(topology)
    alarms = _job_metric_alarms(template)
    assert len(alarms) == 2 * len(topology.queues)  # dead-letter rate and lag, per queue
    for alarm in alarms:
        dims = frozenset((d["Name"], _resolve(d["Value"], topology)) for d in alarm["Dimensions"])
        assert (alarm["Namespace"], alarm["MetricName"], dims) in written, alarm["AlarmName"]
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for alarm in alarms:
        by_metric.setdefault(alarm["MetricName"], []).append(alarm)
    assert {(a["Statistic"], a["Threshold"]) for a in by_metric[names.DEAD_LETTERED]} == {
        ("Average", DEAD_LETTER_RATE_ALARM)
    }
    assert {a["Threshold"] for a in by_metric[names.QUEUE_LAG]} == {QUEUE_LAG_ALARM_S}
    queues = {next(d["Value"] for d in a["Dimensions"] if d["Name"] == names.QUEUE) for a in alarms}
    assert queues == set(topology.queues)


def test_an_alarm_on_a_metric_nobody_writes_would_be_caught() -> None:
    topology = TOPOLOGIES["example"]()
    written = emitted(topology)
    queue = next(iter(topology.queues))
    by_reason = frozenset(
        {(names.PROJECT, topology.project), (names.ENVIRONMENT, topology.environment)}
        | {(names.QUEUE, queue), (names.REASON, "attempts_exhausted")}
    )
    assert (names.DEFAULT_NAMESPACE, names.DEAD_LETTERED, by_reason) not in written
    assert (names.DEFAULT_NAMESPACE, "JobsLost", by_reason) not in written


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_one_dashboard_whose_job_metric_rows_the_writer_emits(name: str) -> None:
    topology = TOPOLOGIES[name]()
    template = cloudformation_template(topology)
    [dashboard] = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Dashboard"
    ]
    assert dashboard["DashboardName"] == {"Fn::Sub": f"{topology.project}-${{EnvironmentName}}"}
    body = dashboard["DashboardBody"]["Fn::Sub"]
    body = body.replace("${EnvironmentName}", topology.environment)
    body = body.replace("${AWS::Region}", "eu-west-1")
    assert "${" not in body
    widgets = json.loads(body)["widgets"]
    written = emitted(topology)
    rows = [row for w in widgets for row in w["properties"]["metrics"]]
    ours = [r for r in rows if r[0] == names.DEFAULT_NAMESPACE]
    sqs = [r for r in rows if r[0] == "AWS/SQS"]
    assert ours
    assert sqs
    for row in ours:
        namespace, metric, *pairs, _options = row
        dims = frozenset(zip(pairs[::2], pairs[1::2], strict=True))
        assert (namespace, metric, dims) in written, row
    charted = {r[1] for r in ours}
    assert charted >= {names.STARTED, names.DEAD_LETTERED, names.DURATION, names.QUEUE_LAG}
    depth_queues = {r[3] for r in sqs if r[1] == "ApproximateNumberOfMessagesVisible"}
    assert len(depth_queues) == 2 * len(topology.queues)  # every queue and its DLQ


# -- Kubernetes: the PrometheusRule ------------------------------------------------------------


def _exposed_sample_names() -> set[str]:
    """The sample names the worker's Prometheus metrics are exposed with (``/metrics``)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exposed: set[str] = set()
    for instrument in vars(instruments()).values():
        for family in instrument.describe():
            exposed.update(family.name + s for s in suffixes[family.type])
    return exposed


def _referenced(expr: str) -> set[str]:
    # PromQL functions are followed by "(", label names by "=" or "," or ")": a metric
    # name is what stands before "[" (a range) or "{" (a selector).
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[\[{]", expr))


def test_the_prometheus_rule_alerts_on_metrics_the_workers_define() -> None:
    topology = TOPOLOGIES["example"]()
    assert not [m for m in kubernetes_manifests(topology) if m["kind"] == "PrometheusRule"]
    manifests = kubernetes_manifests(topology, prometheus_rule=True)
    [rule] = [m for m in manifests if m["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == {"ConveyorDeadLetterRateHigh", "ConveyorQueueLagHigh"}
    exposed = _exposed_sample_names()
    referenced = set().union(*(_referenced(r["expr"]) for r in rules))
    assert referenced == {
        "conveyor_jobs_dead_lettered_total",
        "conveyor_jobs_started_total",
        "conveyor_job_queue_lag_seconds_bucket",
    }
    assert referenced <= exposed
    for r in rules:  # one alert per queue, with the CloudWatch alarms' thresholds
        assert "by (namespace, queue" in r["expr"]
    assert {r["expr"].rsplit(">", 1)[1].strip() for r in rules} == {
        str(DEAD_LETTER_RATE_ALARM),
        str(QUEUE_LAG_ALARM_S),
    }
    assert not _referenced("sum by (queue) (rate(conveyor_jobs_lost_total[5m]))") <= exposed


def test_the_cli_writes_the_rule_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(REPO / "queues.yaml"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    args = ["infra", "export", "kubernetes", "--prometheus-rule", "-o", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    kinds = [yaml.safe_load(p.read_text())["kind"] for p in tmp_path.glob("*.yaml")]
    assert kinds.count("PrometheusRule") == 1
