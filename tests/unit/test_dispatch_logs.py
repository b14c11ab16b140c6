"""At INFO a job logs one line, for its outcome, with the job's identity; its start is DEBUG."""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from infra.logs import configure_logging
from infra.topology import load_topology
from tests.unit.test_celery_compat import binding, channel, deliver, sqs
from tests.unit.test_runner import TOPOLOGY, job, message
from workers.hooks import DEFAULT_HOOKS
from workers.runner import JobRunner
from workers.transport import OUTCOME_KEY, Channel

__all__ = ["binding", "channel", "sqs"]  # fixtures

IDENTITY = ("job_id", "job_type", "queue", "attempt", "trace_id")


@pytest.fixture
def lines() -> Iterator[Any]:
    """Configure JSON logs at INFO (as a node does) into a buffer; a function reading it."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    configure_logging("json", "INFO")
    buffer = io.StringIO()
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)

    def read() -> list[dict[str, Any]]:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    yield read
    root.handlers[:], level, config = saved
    root.setLevel(level)
    structlog.configure(**config)


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobRunner:
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    topology = load_topology(TOPOLOGY, environment="unit")
    return JobRunner(topology, ["work"], rng=random.Random(1), hooks=DEFAULT_HOOKS)


def job_lines(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if str(e.get("event", "")).startswith("job.")]


def test_a_success_logs_one_line_with_the_job_identity(runner: JobRunner, lines: Any) -> None:
    outcome = runner.run(message(job("test.record", {"label": "x"})), "work")
    [line] = job_lines(lines())
    assert line["event"] == "job.succeeded"
    assert line["level"] == "info"
    assert {k: line[k] for k in IDENTITY} == {
        "job_id": outcome.job_id,
        "job_type": "test.record",
        "queue": "work",
        "attempt": 1,
        "trace_id": outcome.trace_id,
    }


def test_a_retry_logs_one_line_where_it_is_applied_with_the_error_and_traceback(
    runner: JobRunner, lines: Any, sqs: Any, channel: Channel, binding: Any
) -> None:
    outcome = runner.run(message(job("test.fail", {"label": "z"})), "work")
    assert outcome.kind == "retry"
    assert job_lines(lines()) == []  # the runner's own lines are DEBUG
    [delivered] = deliver(sqs, channel, binding)
    delivered.delivery_info[OUTCOME_KEY] = outcome
    channel.basic_ack(delivered.delivery_tag)
    [line] = job_lines(lines())
    assert line["event"] == "job.retry_scheduled"
    assert (line["job_id"], line["attempt"], line["error_type"]) == (
        outcome.job_id,
        1,
        "ValueError",
    )
    assert "raise ValueError" in line["traceback"]


def test_a_dead_letter_logs_one_line_once_the_dlq_has_it(
    runner: JobRunner, lines: Any, sqs: Any, channel: Channel, binding: Any
) -> None:
    outcome = runner.run(message(job("test.permanent", {"label": "p"})), "work")
    assert outcome.kind == "dead_letter"
    assert job_lines(lines()) == []
    [delivered] = deliver(sqs, channel, binding)
    delivered.delivery_info[OUTCOME_KEY] = outcome
    channel.basic_ack(delivered.delivery_tag)
    [line] = job_lines(lines())
    assert (line["event"], line["reason"]) == ("job.dead_lettered", "permanent_error")
