"""The idempotency guard: its hook, its DynamoDB store when DynamoDB fails, its wiring."""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from infra import aws
from infra.topology import load_topology
from tests import REPO
from workers.hooks import DEFAULT_HOOKS, IdempotencyGuard, Job
from workers.idempotency import DynamoSuccessStore, job_hooks, job_types_to_guard
from workers.outcome import Outcome

GUARD_YAML = REPO / "tests" / "fixtures" / "guard.yaml"


class MemoryStore:
    """A SuccessStore in a set."""

    def __init__(self) -> None:
        self.done: set[tuple[str, str]] = set()

    def succeeded(self, queue: str, job_id: str) -> bool:
        return (queue, job_id) in self.done

    def mark_succeeded(self, queue: str, job_id: str) -> None:
        self.done.add((queue, job_id))


def _job(job_type: str = "test.once", queue: str = "work", job_id: str = "j1") -> Job:
    return Job(queue, 1, job_id, job_type, None, None)


class Handler:
    """Counts its runs and answers the given outcome kind."""

    def __init__(self, kind: Any = "succeeded") -> None:
        self.kind = kind
        self.runs = 0

    def __call__(self, job: Job) -> Outcome:
        self.runs += 1
        return Outcome(self.kind, job.queue, job.attempt, job.job_id, job.job_type)


def test_guard_skips_a_job_that_succeeded_on_the_same_queue() -> None:
    store, handler = MemoryStore(), Handler()
    guard = IdempotencyGuard(store, ["test.once"])

    first = guard(_job(), lambda: handler(_job()))
    with capture_logs() as events:
        second = guard(_job(), lambda: handler(_job()))
    assert handler.runs == 1
    assert first.kind == second.kind == "succeeded"
    assert second.extra == {"skipped": True}
    assert [e["event"] for e in events] == ["job.skipped_duplicate"]

    # Per queue: the same job id on another queue (fan-out) runs.
    other = _job(queue="audit")
    guard(other, lambda: handler(other))
    assert handler.runs == 2


def test_guard_records_only_successes_of_guarded_types() -> None:
    store = MemoryStore()
    guard = IdempotencyGuard(store, ["test.once"])
    for kind in ("retry", "dead_letter"):
        failing = Handler(kind)
        guard(_job(), functools.partial(failing, _job()))
        assert failing.runs == 1
    assert store.done == set()
    unguarded = _job("test.record")
    handler = Handler()
    for _ in range(2):
        guard(unguarded, lambda: handler(unguarded))
    assert handler.runs == 2
    assert store.done == set()


def test_job_types_to_guard_are_those_of_the_queues() -> None:
    topology = load_topology(GUARD_YAML)
    assert job_types_to_guard(topology, ["work", "audit"]) == ["test.once"]
    assert job_types_to_guard(topology, ["audit"]) == ["test.once"]
    sample = load_topology(REPO / "queues.yaml")
    assert job_types_to_guard(sample, list(sample.queues)) == []


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """AWS settings that point at a closed loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws.reset_clients()
    yield f"http://127.0.0.1:{port}"
    aws.reset_clients()


def test_unreachable_store_means_run_the_job_and_is_logged(unreachable: str) -> None:
    store = DynamoSuccessStore("t-succeeded")
    with capture_logs() as events:
        assert store.succeeded("work", "j1") is False
        store.mark_succeeded("work", "j1")  # does not raise
    assert [(e["event"], e["log_level"]) for e in events] == [
        ("idempotency.check_failed", "warning"),
        ("idempotency.record_failed", "warning"),
    ]
    assert all(e["table"] == "t-succeeded" and unreachable in e["error"] for e in events)


def test_guarded_job_runs_when_the_store_is_unreachable(unreachable: str) -> None:
    guard = IdempotencyGuard(DynamoSuccessStore("t-succeeded"), ["test.once"])
    handler = Handler()
    for _ in range(2):
        assert guard(_job(), lambda: handler(_job())).kind == "succeeded"
    assert handler.runs == 2


def test_the_guard_goes_innermost_for_guarded_job_types() -> None:
    topology = load_topology(GUARD_YAML, environment="e1")
    *outer, guard = job_hooks(topology, ["work", "audit"])
    assert tuple(outer) == DEFAULT_HOOKS
    assert isinstance(guard, IdempotencyGuard)
    assert guard.job_types == frozenset({"test.once"})
    assert isinstance(guard.store, DynamoSuccessStore)
    assert guard.store.table_name == "cg-e1-succeeded"


def test_no_guard_without_guarded_job_types() -> None:
    topology = load_topology(REPO / "tests" / "fixtures" / "pipeline.yaml")
    assert job_hooks(topology, ["work", "audit"]) == DEFAULT_HOOKS
