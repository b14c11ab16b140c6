"""Delayed jobs end to end: API, two scheduler replicas (one killed with -9), a worker.

500 jobs delayed 2 to 20 s go in through ``POST /v1/jobs``; two ``conveyor scheduler``
processes share them; half-way one is killed with SIGKILL (whatever it had claimed
and not yet deleted is published by the other once the lease runs out, with the same
job id). Every job must run, none before its due time, and none twice: the job type
has the idempotency guard, which collapses a second publish of the same id.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infra.provision import apply
from infra.topology import load_topology
from producers.client import Client
from tests import REPO
from tests.support import outbox
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from tests.support.processes import start_api, start_scheduler, start_worker

pytestmark = pytest.mark.e2e

TOPOLOGY = REPO / "tests" / "fixtures" / "delay.yaml"
JOBS = 500
DELAY_MIN_S, DELAY_MAX_S = 2.0, 20.0
#: Short leases, so the killed replica's claims come free within the test.
LEASE_S = 5


def test_delayed_jobs_run_once_on_time_though_a_scheduler_is_killed(
    aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "outbox"
    box.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    apply(load_topology(TOPOLOGY, environment=aws_env.environment))
    env = {
        **aws_env.env,
        "CONVEYOR_QUEUES_FILE": str(TOPOLOGY),
        "CONVEYOR_TEST_OUTBOX": str(box),
        "PYTHONPATH": str(REPO),  # the worker imports tests.jobs
        "CONVEYOR_SCHEDULING_LEASE_S": str(LEASE_S),
        "CONVEYOR_SCHEDULING_POLL_INTERVAL_S": "0.25",
    }
    api = start_api(env=env, log_dir=tmp_path)
    worker = start_worker("main", env=env, log_dir=tmp_path)
    doomed = start_scheduler(env=env, log_dir=tmp_path, name="scheduler-a")
    survivor = start_scheduler(env=env, log_dir=tmp_path, name="scheduler-b")
    try:
        rng = random.Random(15)
        jobs = [
            {
                "type": "test.once",
                "data": {"label": f"j{i}"},
                "delay_s": round(rng.uniform(DELAY_MIN_S, DELAY_MAX_S), 3),
            }
            for i in range(JOBS)
        ]
        with Client(api.url, None) as client:
            results = client.enqueue_many(jobs)
        assert all(r.accepted for r in results), [r.error for r in results if not r.accepted]
        due: dict[str, datetime] = {}
        for result in results:
            assert result.id is not None
            assert result.due_at is not None
            due[result.id] = result.due_at

        # Half-way (by published jobs, not by time): kill one replica outright.
        eventually(
            lambda: doomed.published() + survivor.published() >= JOBS // 2,
            what="half the jobs to be published",
        )
        assert doomed.published() > 0, "both replicas should have shared the work"
        doomed.kill9()

        def all_ran() -> bool:
            return outbox.jobs_seen(box) >= JOBS and all(
                outbox.succeeded(box, job_id) for job_id in due
            )

        # The latest job is due at most 20 s after the enqueue, plus a lease for claims
        # the killed replica held.
        eventually(all_ran, what=f"all {JOBS} delayed jobs to run", timeout_s=90)
        early, twice = [], []
        for job_id, due_at in due.items():
            runs = outbox.runs(box, job_id)
            if len(runs) != 1:
                twice.append((job_id, len(runs)))
            ran_at = datetime.fromtimestamp(runs[0]["at"], UTC)
            if ran_at < due_at:
                early.append((job_id, due_at.isoformat(), ran_at.isoformat()))
        assert not early, f"{len(early)} jobs ran before their due time: {early[:5]}"
        assert not twice, f"{len(twice)} jobs ran more than once: {twice[:5]}"
        assert len(os.listdir(box)) == JOBS  # no job the test did not enqueue
        assert survivor.stop(timeout_s=30) == 0  # SIGTERM: the turn ends, the process exits

    finally:
        for child in (survivor, doomed, worker, api):
            child.close()
