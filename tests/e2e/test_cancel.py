"""End to end: cancelling queued and running jobs, with real API and worker processes.

A keyed ``conveyor api`` and ``conveyor worker`` nodes run against the moto server
(tests/e2e/cancel_system.py). A job is enqueued to a queue whose worker is not running
yet, cancelled, and only then is the worker started: the message must be deleted,
the handler must never run (its outbox stays empty), the ledger must say
``cancelled`` — for each worker pool kind. A running job is not interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli import app as conveyor_cli
from producers.client import NotCancelledError, NotFoundError
from tests.e2e.cancel_system import ALICE, BOB, CancelSystem, system
from tests.support.polling import eventually
from tests.support.processes import metric
from tests.support.queues import drained, queue_url

pytestmark = [
    pytest.mark.e2e,
    # One running system for the module: its tests go to one pytest-xdist worker.
    pytest.mark.xdist_group("cancel"),
]

__all__ = ["system"]  # the module's fixture


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_a_cancelled_queued_job_is_deleted_unrun(system: CancelSystem, pool: str) -> None:
    job_type, queue = f"cancel.{pool}", f"later-{pool}"
    alice = system.client(ALICE)
    doomed = alice.enqueue(job_type, {"label": "doomed"}).id
    control = alice.enqueue(job_type, {"label": "control"}).id

    # Another key cannot cancel it (answered as an unknown id: see test_cancel_delayed).
    with system.client(BOB) as bob, pytest.raises(NotFoundError) as foreign:
        bob.cancel(doomed)
    assert f"no job '{doomed}' to cancel" in foreign.value.detail

    cancelled = alice.cancel(doomed)
    assert (cancelled.state, cancelled.queues) == ("cancelled", {queue: "cancelled"})
    assert alice.status(doomed).state == "cancelled"
    # Twice: the same answer; the CLI says so too.
    assert alice.cancel(doomed).raw == cancelled.raw
    cli = CliRunner().invoke(
        conveyor_cli,
        ["jobs", "cancel", doomed, "--api-url", system.api.url, "--api-key", ALICE, "--json"],
    )
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output) == cancelled.raw

    worker = system.worker(pool)
    url = queue_url(system.topology, queue)
    eventually(lambda: system.runs(control), what="the control job to run")
    eventually(lambda: drained(url), what=f"{queue} to be empty (the cancelled job deleted)")
    assert system.runs(doomed) == []  # the handler never ran
    status = alice.status(doomed)
    assert (status.state, status.queues[queue]["attempt"]) == ("cancelled", 0)
    assert alice.wait(control, timeout_s=30).state == "succeeded"
    page = eventually(
        lambda: (p := worker.answers(f"{worker.health_url}/metrics")) is not None and p,
        what="the worker's metrics",
    )
    labels = {"job_type": job_type, "queue": queue}
    assert metric(page.text, "conveyor_jobs_cancelled_total", **labels) == 1
    assert metric(page.text, "conveyor_jobs_succeeded_total", **labels) == 1
    assert "job.cancelled" in worker.text()


def test_a_running_job_is_not_interrupted(system: CancelSystem, tmp_path: Path) -> None:
    system.worker("busy")
    gate = tmp_path / "gate"
    alice = system.client(ALICE)
    job_id = alice.enqueue("cancel.slow", {"label": "slow", "gate": str(gate)}).id
    eventually(lambda: alice.status(job_id).state == "running", what="the job to be running")

    with pytest.raises(NotCancelledError) as refused:
        alice.cancel(job_id)
    assert refused.value.status_code == 409
    assert refused.value.state == "running"
    assert "not interrupted" in refused.value.detail
    cli = CliRunner().invoke(
        conveyor_cli,
        ["jobs", "cancel", job_id, "--api-url", system.api.url, "--api-key", ALICE],
    )
    assert cli.exit_code == 1, cli.output
    assert "not cancelled" in cli.output

    gate.touch()
    assert alice.wait(job_id, timeout_s=60).state == "succeeded"
    assert [run["outcome"] for run in system.runs(job_id)] == ["ok"]
    # Finished: still 409, with the state it finished in.
    with pytest.raises(NotCancelledError) as finished:
        alice.cancel(job_id)
    assert finished.value.state == "succeeded"
