"""On AWS Lambda the adapter writes its job metrics as CloudWatch EMF lines, by default.

The handler runs as Lambda would call it (``AWS_LAMBDA_FUNCTION_NAME`` set, no
``CONVEYOR_METRICS``) on real SQS messages from the emulator; its stdout must hold
one valid EMF document per attempt, with the outcome counted under the names and
dimensions the exported alarms watch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from infra import job_metrics as names
from tests.integration.test_lambda_adapter import PIPELINE, _harness, _job
from tests.support.emf import emf_lines, emf_problems
from workers import lambda_adapter
from workers.idempotency import LAMBDA_ENVIRONMENT_VARIABLE

if TYPE_CHECKING:
    from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration


def test_lambda_writes_valid_emf_lines_by_default(
    aws_env: AwsEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(LAMBDA_ENVIRONMENT_VARIABLE, "conveyor-work")
    monkeypatch.delenv("CONVEYOR_METRICS", raising=False)
    monkeypatch.delenv("CONVEYOR_METRICS_NAMESPACE", raising=False)
    # A fresh cold start (the adapter is cached per queues file), and logging left as the
    # test run has it: the adapter configures it only for a process it owns.
    monkeypatch.setattr(lambda_adapter, "_adapter", None)
    monkeypatch.setattr(lambda_adapter, "configure_logging", lambda *_: None)
    harness = _harness(PIPELINE, tmp_path, monkeypatch)
    work = harness.work("work")
    _, ok_body = _job("test.record", {"label": "fine"})
    _, doomed_body = _job("test.permanent", {"label": "doomed"})
    harness.send(work, ok_body)
    harness.send(work, doomed_body)
    messages = harness.receive(work, 2)
    capsys.readouterr()

    assert harness.invoke(work, messages) == []

    output = capsys.readouterr().out
    raw = [line for line in output.splitlines() if '"_aws"' in line]
    assert len(raw) == 2, output
    for line in raw:
        assert emf_problems(line) == []
    by_type = {doc[names.JOB_TYPE]: doc for doc in emf_lines(output)}
    ok, doomed = by_type["test.record"], by_type["test.permanent"]
    for doc in (ok, doomed):
        namespaces = {d["Namespace"] for d in doc["_aws"]["CloudWatchMetrics"]}
        assert namespaces == {names.DEFAULT_NAMESPACE}
        assert (doc[names.PROJECT], doc[names.QUEUE], doc[names.POOL]) == ("ct", "work", "main")
        assert doc[names.ENVIRONMENT] == harness.topology.environment
        assert doc[names.STARTED] == 1
        assert doc[names.QUEUE_LAG] >= 0
    assert (ok[names.SUCCEEDED], ok[names.FAILED]) == (1, 0)
    assert (doomed[names.FAILED], doomed[names.DEAD_LETTERED]) == (1, 1)
    assert doomed[names.REASON] == "permanent_error"
