"""End to end: cancelling delayed jobs, and the answers that need the timer store.

Needs the delayed-jobs work of issue 15 (``delay_s`` on ``POST /v1/jobs``, the timer
store of :mod:`infra.timers`, its table from ``conveyor infra apply``, and the
``conveyor scheduler`` role): it cannot pass before that work is merged. A delayed
job cancelled before its time is never published, so it never runs, whatever its
type; a control job with the same delay runs, which shows the scheduler worked.
Unknown ids (which the API looks up in the timer store too) are 404 exactly like
another key's job.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from conveyor.cli import app as conveyor_cli
from infra.aws.names import timers_table_name
from infra.timers import TimerStore
from producers.client import NotFoundError
from tests.e2e.cancel_system import ALICE, BOB, CancelSystem, system
from tests.support.polling import eventually
from tests.support.processes import CONVEYOR
from tests.support.queues import drained, queue_url

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("cancel-delayed"),
]

__all__ = ["system"]  # the module's fixture

DELAY_S = 3


def _enqueue_delayed(system: CancelSystem, jobs: list[dict[str, Any]]) -> list[str]:
    """Enqueue ``jobs`` (each with ``delay_s``) as alice; their ids, in order."""
    answer = httpx.post(
        f"{system.api.url}/v1/jobs",
        json={"jobs": jobs},
        headers={"Authorization": f"Bearer {ALICE}"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    return [str(result["id"]) for result in answer.json()["results"]]


def test_a_cancelled_delayed_job_is_never_published(system: CancelSystem) -> None:
    system.child("scheduler", [*CONVEYOR, "scheduler"])
    system.worker("busy")
    doomed, plain_doomed, control = _enqueue_delayed(
        system,
        [
            {"type": "cancel.slow", "data": {"label": "doomed"}, "delay_s": DELAY_S},
            {"type": "cancel.plain", "data": {"label": "doomed"}, "delay_s": DELAY_S},
            {"type": "cancel.slow", "data": {"label": "control"}, "delay_s": DELAY_S},
        ],
    )
    alice = system.client(ALICE)
    # Another key is answered exactly as an unknown id.
    with pytest.raises(NotFoundError) as foreign:
        system.client(BOB).cancel(doomed)
    with pytest.raises(NotFoundError) as unknown:
        system.client(BOB).cancel("0" * 32)
    assert foreign.value.detail == unknown.value.detail.replace("0" * 32, doomed)

    for job_id in (doomed, plain_doomed):  # with the ledger, and without it
        cancelled = alice.cancel(job_id)
        assert cancelled.state == "cancelled", cancelled.raw
        assert "never be published" in cancelled.detail
    assert TimerStore(timers_table_name(system.topology)).get(doomed) is None
    assert alice.cancel(doomed).state == "cancelled"  # twice: the same answer

    assert alice.wait(control, timeout_s=60).state == "succeeded"
    eventually(lambda: drained(queue_url(system.topology, "busy")), what="busy to be empty")
    assert system.runs(doomed) == []
    assert system.runs(plain_doomed) == []
    assert alice.status(doomed).state == "cancelled"


def test_unknown_ids_and_queued_jobs_without_the_ledger_are_404(system: CancelSystem) -> None:
    alice = system.client(ALICE)
    with pytest.raises(NotFoundError) as unknown:
        alice.cancel("no-such-job")
    assert "ledger: true" in unknown.value.detail
    # A queued job whose type does not record status cannot be found again.
    plain = alice.enqueue("cancel.plain", {"label": "plain"}).id
    with pytest.raises(NotFoundError):
        alice.cancel(plain)

    args = ["--api-url", system.api.url, "--api-key", ALICE]
    missing = CliRunner().invoke(conveyor_cli, ["jobs", "cancel", "no-such-job", *args])
    assert missing.exit_code == 2, missing.output
    assert "cancel failed: 404" in missing.output
