"""Heartbeat leases: a held message is kept; the runtime limit starts with the job."""

from __future__ import annotations

import pytest

from infra.topology.model import MAX_VISIBILITY_TIMEOUT_S
from workers.heartbeat import Heartbeat, new_lease


def test_a_held_message_is_kept_invisible_until_its_job_starts() -> None:
    lease = new_lease("url", "handle", visibility_timeout_s=30, max_runtime_s=60)
    # Waiting in the node's buffer longer than max_runtime_s does not use it up.
    assert lease.deadline - lease.received_at == pytest.approx(MAX_VISIBILITY_TIMEOUT_S)
    assert lease.due(lease.received_at + 500)


def test_the_runtime_limit_counts_from_the_job_start() -> None:
    heartbeat = Heartbeat(lambda _url: None)
    lease = new_lease("url", "handle", visibility_timeout_s=30, max_runtime_s=60)
    heartbeat.track(lease)
    heartbeat.start("handle")
    assert lease.started_at is not None
    assert lease.deadline == lease.started_at + 60
    assert lease.due(lease.started_at + 50)  # extended while it runs
    assert not lease.due(lease.started_at + 61)  # then left to become visible


def test_starting_twice_or_an_unknown_message_changes_nothing() -> None:
    heartbeat = Heartbeat(lambda _url: None)
    lease = new_lease("url", "handle", visibility_timeout_s=30, max_runtime_s=None)
    heartbeat.track(lease)
    heartbeat.start("handle")
    first = (lease.started_at, lease.deadline)
    heartbeat.start("handle")
    heartbeat.start("unknown")
    assert (lease.started_at, lease.deadline) == first
    assert lease.deadline == lease.received_at + MAX_VISIBILITY_TIMEOUT_S
