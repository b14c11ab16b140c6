"""CloudWatch EMF: the setting, the hooks it selects, and lines valid by the specification."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest

from infra import job_metrics as names
from infra.failure import Failure
from infra.settings import SettingsError, WorkerSettings
from infra.topology import parse_topology
from tests.support.emf import emf_problems
from workers.emf import DIRECTIVES, Directive, EmfMetrics, encode
from workers.hooks import DEFAULT_HOOKS, Job, record_metrics
from workers.idempotency import LAMBDA_ENVIRONMENT_VARIABLE, job_hooks
from workers.outcome import Outcome, OutcomeKind

YAML = """\
version: 1
project: ct
environment: unit
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
  lonely:
    subscriptions: [{topic: jobs}]
pools:
  main: {queues: [work]}
job_types:
  test.record: {topic: jobs, payload: "tests.jobs:Note", handler: "tests.jobs:record"}
"""


@pytest.fixture(autouse=True)
def _no_metrics_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_METRICS", raising=False)
    monkeypatch.delenv("CONVEYOR_METRICS_NAMESPACE", raising=False)
    monkeypatch.delenv(LAMBDA_ENVIRONMENT_VARIABLE, raising=False)


# -- the setting ---------------------------------------------------------------------------


def test_prometheus_by_default_emf_on_lambda_and_both_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert WorkerSettings().metric_sinks() == {"prometheus"}
    monkeypatch.setenv(LAMBDA_ENVIRONMENT_VARIABLE, "conveyor-work")
    assert WorkerSettings().metric_sinks() == {"emf"}
    monkeypatch.setenv("CONVEYOR_METRICS", " prometheus , emf")
    assert WorkerSettings().metric_sinks() == {"prometheus", "emf"}
    monkeypatch.setenv("CONVEYOR_METRICS", "prometheus")  # explicit wins on Lambda too
    assert WorkerSettings().metric_sinks() == {"prometheus"}
    assert WorkerSettings().metrics_namespace == names.DEFAULT_NAMESPACE


@pytest.mark.parametrize("value", ["statsd", "emf,statsd", ",", ""])
def test_an_unknown_sink_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CONVEYOR_METRICS", value)
    with pytest.raises(SettingsError, match=r"CONVEYOR_METRICS: .*prometheus, emf"):
        WorkerSettings()


def test_job_hooks_follow_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    topology = parse_topology(YAML, environment="unit")
    assert job_hooks(topology, ["work"]) == DEFAULT_HOOKS  # unchanged by default
    monkeypatch.setenv("CONVEYOR_METRICS", "prometheus,emf")
    monkeypatch.setenv("CONVEYOR_METRICS_NAMESPACE", "Acme/Jobs")
    log_context, emf, prometheus = job_hooks(topology, ["work"])
    assert (log_context, prometheus) == DEFAULT_HOOKS
    assert isinstance(emf, EmfMetrics)
    assert (emf.project, emf.environment, emf.namespace) == ("ct", "unit", "Acme/Jobs")
    assert emf.pools == {"work": "main", "lonely": names.NO_POOL}
    monkeypatch.delenv("CONVEYOR_METRICS")
    monkeypatch.setenv(LAMBDA_ENVIRONMENT_VARIABLE, "conveyor-work")
    hooks = job_hooks(topology, ["work"])
    assert record_metrics not in hooks  # Lambda: EMF alone, nothing to scrape there
    assert [type(h) for h in hooks[1:]] == [EmfMetrics]


# -- the lines -----------------------------------------------------------------------------


def _failure(reason: str) -> Failure:
    return Failure(
        reason=reason,
        error_type="ValueError",
        error_message="no",
        attempts=3,
        max_attempts=3,
        queue="work",
        worker="w",
        first_attempt_at=None,
        last_failure_at="2026-01-01T00:00:00Z",
    )


def _line(kind: OutcomeKind, *, queue: str = "work", **extra: Any) -> dict[str, Any]:
    out = io.StringIO()
    hook = EmfMetrics("ct", "unit", {"work": "main"}, namespace="Conveyor", stream=out)
    job = Job(queue, 1, "j-1", "test.record", None, sent_at_s=time.time() - 2)
    outcome = Outcome(kind, queue, 1, "j-1", "test.record", **extra)
    assert hook(job, lambda: outcome) is outcome
    [line] = out.getvalue().splitlines()
    assert emf_problems(line) == []
    document: dict[str, Any] = json.loads(line)
    return document


def _metrics(document: dict[str, Any]) -> dict[str, tuple[list[list[str]], str]]:
    """Metric name -> (its dimension sets, its unit), from all the document's directives."""
    found: dict[str, tuple[list[list[str]], str]] = {}
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for metric in directive["Metrics"]:
            sets, _ = found.get(metric["Name"], ([], ""))
            found[metric["Name"]] = ([*sets, *directive["Dimensions"]], metric["Unit"])
    return found


def test_a_success_is_one_valid_line_of_counts_duration_and_lag() -> None:
    doc = _line("succeeded")
    assert (doc[names.STARTED], doc[names.SUCCEEDED], doc[names.FAILED]) == (1, 1, 0)
    assert (doc[names.RETRIED], doc[names.CANCELLED]) == (0, 0)
    assert doc[names.DURATION] >= 0
    assert doc[names.QUEUE_LAG] >= 1  # sent two seconds ago
    assert doc[names.DEAD_LETTERED] == 0  # on every line: its Average is the rate
    assert names.REASON not in doc
    dims = {k: doc[k] for k in names.JOB_DIMENSIONS}
    assert dims == {
        "Project": "ct",
        "Environment": "unit",
        "Queue": "work",
        "Pool": "main",
        "JobType": "test.record",
    }
    metrics = _metrics(doc)
    assert metrics[names.STARTED] == (
        [list(names.QUEUE_DIMENSIONS), list(names.JOB_DIMENSIONS)],
        "Count",
    )
    assert metrics[names.QUEUE_LAG] == ([list(names.QUEUE_DIMENSIONS)], "Seconds")
    assert metrics[names.DURATION][1] == "Seconds"
    assert abs(doc["_aws"]["Timestamp"] - time.time() * 1000) < 60_000


def test_a_retry_and_a_dead_letter_count_as_failures_the_dead_letter_by_reason() -> None:
    retry = _line("retry", delay_s=5)
    assert (retry[names.FAILED], retry[names.RETRIED], retry[names.SUCCEEDED]) == (1, 1, 0)
    dead = _line("dead_letter", queue="lonely", failure=_failure("retries_exhausted"))
    assert (dead[names.FAILED], dead[names.RETRIED], dead[names.DEAD_LETTERED]) == (1, 0, 1)
    assert (dead[names.REASON], dead[names.POOL]) == ("retries_exhausted", names.NO_POOL)
    sets, unit = _metrics(dead)[names.DEAD_LETTERED]
    assert sets == [
        list(names.QUEUE_DIMENSIONS),
        list(names.JOB_DIMENSIONS),
        list(names.DEAD_LETTER_DIMENSIONS),
    ]
    assert unit == "Count"
    # The reason is a dimension of the dead-letter metric only (low cardinality elsewhere).
    others = [s for m, (ss, _) in _metrics(dead).items() if m != names.DEAD_LETTERED for s in ss]
    assert all(names.REASON not in s for s in others)


def test_a_cancelled_job_counts_as_cancelled_without_handler_time() -> None:
    doc = _line("succeeded", extra={"cancelled": True})
    assert (doc[names.CANCELLED], doc[names.SUCCEEDED], doc[names.STARTED]) == (1, 0, 1)
    assert names.DURATION not in doc
    assert names.DURATION not in _metrics(doc)


def test_a_job_without_a_send_time_has_no_lag_metric() -> None:
    out = io.StringIO()
    hook = EmfMetrics("ct", "unit", {}, stream=out)
    job = Job("work", 1, None, None, None, sent_at_s=None)
    hook(job, lambda: Outcome("succeeded", "work", 1))
    doc = json.loads(out.getvalue())
    assert emf_problems(out.getvalue().strip()) == []
    assert names.QUEUE_LAG not in _metrics(doc)
    assert (doc[names.JOB_TYPE], doc[names.POOL]) == ("unknown", names.NO_POOL)


# -- the validator can fail ------------------------------------------------------------------


def _valid() -> dict[str, Any]:
    line = encode(
        "Conveyor",
        DIRECTIVES,
        dict.fromkeys(names.DEAD_LETTER_DIMENSIONS, "v"),
        {names.STARTED: 1, names.DEAD_LETTERED: 1},
    )
    document: dict[str, Any] = json.loads(line)
    return document


@pytest.mark.parametrize(
    ("break_it", "problem"),
    [
        (lambda d: d["_aws"].update(Timestamp=1.5), "Timestamp"),
        (lambda d: d["_aws"].update(Timestamp="1"), "Timestamp"),
        (lambda d: d.pop("_aws"), "_aws"),
        (lambda d: d["_aws"].update(CloudWatchMetrics={}), "must be an array"),
        (lambda d: d.pop(names.QUEUE), "'Queue' is not a root member"),
        (lambda d: d.update({names.QUEUE: 3}), "must be a string"),
        (lambda d: d.pop(names.STARTED), "'JobsStarted' is not a root member"),
        (lambda d: d.update({names.STARTED: "1"}), "must be a number"),
        (lambda d: d.update({names.STARTED: list(range(101))}), "at most 100 numbers"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0].update(Dimensions=[["a"] * 31]), "30"),
        (
            lambda d: d["_aws"]["CloudWatchMetrics"][0].update(Dimensions=["Queue"]),
            "array of strings",
        ),
        (
            lambda d: d["_aws"]["CloudWatchMetrics"][0].update(
                Metrics=[{"Name": f"m{i}"} for i in range(101)]
            ),
            "more than 100",
        ),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(Unit="Jobs"), "Unit"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0].pop("Namespace"), "Namespace"),
    ],
)
def test_the_validator_rejects_what_the_specification_forbids(break_it: Any, problem: str) -> None:
    document = _valid()
    assert emf_problems(json.dumps(document)) == []
    break_it(document)
    problems = emf_problems(json.dumps(document))
    assert any(problem in p for p in problems), problems


def test_the_encoder_refuses_a_directive_beyond_the_limits() -> None:
    too_many = Directive(((names.QUEUE,),), {f"m{i}": "Count" for i in range(101)})
    with pytest.raises(ValueError, match="limits"):
        encode("Conveyor", [too_many], {names.QUEUE: "q"}, {f"m{i}": 1 for i in range(101)})
