"""A worker logging in the console format prints no payload: tracebacks carry no frame locals.

The sibling check on the JSON format is tests/faults/test_hardening.py. structlog's
console renderer shows every frame's locals by default (rich tracebacks), and a
failing job's frames hold its envelope and payload.
"""

from __future__ import annotations

import secrets

from infra.envelope import make_envelope
from tests.faults.harness import Cluster
from tests.support.polling import eventually


def test_a_failing_job_leaves_no_payload_in_a_console_log(cluster: Cluster) -> None:
    marker = f"jane.doe.{secrets.token_hex(6)}@example.com"
    cluster.env = {**cluster.env, "CONVEYOR_LOG_FORMAT": "console", "CONVEYOR_LOG_LEVEL": "INFO"}
    node = cluster.node("b")
    # fault.flaky fails (ConnectionError, logged with its traceback) on attempt 1; the
    # model ignores the extra member, which stays in the envelope the worker holds.
    envelope = make_envelope(
        "fault.flaky", {"succeed_on_attempt": 2, "contact": marker}, source="/faults"
    )
    [job_id] = cluster.publish([envelope])
    eventually(lambda: cluster.ok_runs(job_id), what="the job to succeed on its second attempt")
    text = node.text()
    assert "Traceback" in text, "the failure was logged with its traceback"
    assert "ConnectionError" in text
    lines = [line for line in text.splitlines() if marker in line]
    assert not lines, f"the payload is in the console log: {lines[:3]}"
