"""End to end: real workers dead-letter jobs; `conveyor dlq` inspects them, redrives the fixed
ones back to the workers, exports and refuses unconfirmed destruction.

One scenario, in order, on one running system (tests/fixtures/dlq.yaml): starting the
system is the expensive part, and each step builds on what the previous one left.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from conveyor.cli.dlq import app
from conveyor.system import LocalSystem, local_system
from infra.topology import Topology, load_topology
from tests import REPO
from tests.dlq_jobs import DEPENDENCY_DOWN
from tests.support import outbox as handler_outbox
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from tests.support.queues import url_by_name, visible_in_flight

pytestmark = pytest.mark.e2e


@dataclass
class Running:
    system: LocalSystem
    topology: Topology
    outbox: Path
    runner: CliRunner

    def post(self, job_type: str, label: str) -> str:
        response = httpx.post(
            f"{self.system.api_url}/v1/jobs/{job_type}", json={"label": label}, timeout=10
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        return handler_outbox.runs(self.outbox, job_id)

    def depth(self, name: str) -> tuple[int, int]:
        return visible_in_flight(url_by_name(name))

    def dlq(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args))

    def dlq_json(self, *args: str) -> Any:
        result = self.dlq(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def running(aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / DEPENDENCY_DOWN).touch()
    queues_file = REPO / "tests" / "fixtures" / "dlq.yaml"
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(queues_file))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # worker processes import tests.dlq_jobs
    topology = load_topology(queues_file)
    with local_system(topology, use_emulator=False, log_dir=tmp_path) as system:
        yield Running(system, topology, outbox, CliRunner())


def test_dead_letters_are_inspected_redriven_once_fixed_exported_and_kept_safe(
    running: Running, tmp_path: Path
) -> None:
    dlq_name = running.topology.dlq_name("work")
    fragile = {running.post("dlq.fragile", f"fragile-{i}") for i in range(3)}
    broken = {running.post("dlq.broken", f"broken-{i}") for i in range(2)}
    eventually(lambda: running.depth(dlq_name) == (5, 0), what="5 jobs in the DLQ")

    # list: the right depth; show: the right jobs and reasons, twice (nothing consumed).
    rows = {r["queue"]: r for r in running.dlq_json("list")["dlqs"]}
    assert (rows["work"]["depth"], rows["ledger"]["depth"]) == (5, 0)
    assert rows["work"]["oldest_age_s"] is not None
    shown = running.dlq_json("show", "work")["jobs"]
    assert Counter((j["type"], j["reason"]) for j in shown) == {
        ("dlq.fragile", "attempts_exhausted"): 3,
        ("dlq.broken", "permanent_error"): 2,
    }
    assert {j["job_id"] for j in shown} == fragile | broken
    for job in shown:
        if job["type"] == "dlq.fragile":
            assert (job["attempts"], job["max_attempts"]) == (2, 2)
            assert job["error_type"] == "ConnectionError"
            assert job["error_message"].startswith("dependency down while processing fragile-")
        else:
            assert (job["attempts"], job["error_type"]) == (1, "PermanentError")
    again = running.dlq_json("show", "work")["jobs"]
    assert {j["message_id"] for j in again} == {j["message_id"] for j in shown}
    assert running.depth(dlq_name) == (5, 0)
    text = running.dlq("show", "work", "--type", "dlq.fragile", "--traceback")
    assert text.exit_code == 0, text.output
    assert text.stdout.count("reason    attempts_exhausted") == 3
    assert "ConnectionError: dependency down while processing" in text.stdout

    # --dry-run lists what would move and moves nothing; without --yes nothing moves either.
    dry = running.dlq("redrive", "work", "--type", "dlq.fragile", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert {line.split()[0] for line in dry.stdout.splitlines()[:-1]} == fragile
    assert "dry run: 3 jobs would move" in dry.stdout
    unconfirmed = running.dlq("redrive", "work", "--type", "dlq.fragile")
    assert unconfirmed.exit_code == 2
    assert running.depth(dlq_name) == (5, 0)

    # The dependency is back: redrive only the fragile jobs; the workers run them to success
    # with a fresh attempt budget.
    (running.outbox / DEPENDENCY_DOWN).unlink()
    moved = running.dlq("redrive", "work", "--type", "dlq.fragile", "--yes")
    assert moved.exit_code == 0, moved.output
    assert "moved 3 of 3 jobs" in moved.stdout
    assert "redrive: 3/3 moved" in moved.stderr  # progress, one line per batch off a terminal
    for job_id in fragile:

        def succeeded(job_id: str = job_id) -> list[dict[str, Any]] | None:
            runs = running.runs(job_id)
            return runs if runs and runs[-1]["outcome"] == "ok" else None

        runs = eventually(succeeded, what=f"redriven job {job_id} to succeed")
        assert [(r["attempt"], r["outcome"]) for r in runs] == [
            (1, "failed"),
            (2, "failed"),
            (1, "ok"),
        ]
    eventually(
        lambda: running.depth(running.topology.queue_name("work")) == (0, 0),
        what="the work queue to drain",
    )
    left = running.dlq_json("show", "work")["jobs"]
    assert {j["job_id"] for j in left} == broken

    # export: one JSON line per job; the DLQ is unchanged.
    out = tmp_path / "dead.jsonl"
    exported = running.dlq("export", "work", str(out))
    assert exported.exit_code == 0, exported.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["job_id"] for r in records} == broken
    assert all(r["failure"]["reason"] == "permanent_error" for r in records)
    assert running.depth(dlq_name) == (2, 0)

    # Destruction without --yes and without a terminal is refused, and changes nothing.
    for args in (("purge", "work"), ("delete", "work", *broken), ("redrive", "work")):
        refused = running.dlq(*args)
        assert refused.exit_code == 2, (args, refused.output)
        assert running.depth(dlq_name) == (2, 0)
    purged = running.dlq("purge", "work", "--yes")
    assert purged.exit_code == 0, purged.output
    assert "deleted 2 messages" in purged.stdout
    assert running.dlq_json("list")["dlqs"][0]["depth"] == 0
