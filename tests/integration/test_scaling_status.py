"""`conveyor status` against the emulator: queue depths, DLQ depth and age, pool replicas."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from infra import aws
from infra.envelope import encode, make_envelope
from infra.provision import apply
from infra.topology import Topology, load_topology
from ops.scaling.store import DesiredStore, state_dir_for
from tests import REPO
from tests.support.emulator import AwsEnv
from tests.support.queues import depth

pytestmark = pytest.mark.integration

runner = CliRunner()
TOPOLOGY = REPO / "tests" / "fixtures" / "scaling.yaml"


@pytest.fixture
def topology(aws_env: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Topology:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CONVEYOR_SCALING_BACKEND", raising=False)
    return load_topology(TOPOLOGY, environment=aws_env.environment)


def _send(url: str, count: int, **extra: object) -> None:
    entries = [
        {"Id": str(i), "MessageBody": encode(make_envelope("test.sleep", {"seconds": 0})), **extra}
        for i in range(count)
    ]
    aws.client("sqs").send_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]


def test_status_reports_depths_dlq_and_pools(topology: Topology) -> None:
    missing = runner.invoke(app, ["status", "--json"])
    assert missing.exit_code == 0, missing.output
    (row,) = json.loads(missing.output)["queues"]
    assert (row["queue"], row["exists"], row["visible"]) == ("work", False, None)

    apply(topology)
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=topology.queue_name("work"))["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=topology.dlq_name("work"))["QueueUrl"]
    _send(url, 5)
    _send(url, 2, DelaySeconds=600)
    _send(dlq, 3)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=600)
    DesiredStore(state_dir_for(topology)).update({"main": 2})

    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    (row,) = document["queues"]
    assert (row["visible"], row["in_flight"], row["delayed"]) == (4, 1, 2)
    assert row["dlq_depth"] == 3
    assert row["dlq_oldest_age_s"] is not None
    assert row["dlq_oldest_age_s"] >= 0
    assert row["oldest_age_s"] is None  # the emulator has no CloudWatch SQS metrics
    (pool,) = document["pools"]
    assert (pool["pool"], pool["desired"], pool["running"]) == ("main", 2, 0)
    assert "no supervisor is running" in pool["note"]
    # The DLQ peek released what it read: the three are visible again.
    assert depth(dlq).visible == 3

    table = runner.invoke(app, ["status"])
    assert table.exit_code == 0, table.output
    assert "work" in table.output
    assert "unknown" in table.output


def test_watch_refreshes(topology: Topology, aws_env: AwsEnv, tmp_path: object) -> None:
    apply(topology)
    env = {
        **aws_env.env,
        "CONVEYOR_QUEUES_FILE": str(TOPOLOGY),
        "CONVEYOR_STATE_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "status", "--watch", "--json", "--interval-s", "0.5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        url = aws.client("sqs").get_queue_url(QueueName=topology.queue_name("work"))["QueueUrl"]
        _send(url, 4)
        while True:  # every refresh is one document; the deadline is the test timeout
            later = json.loads(proc.stdout.readline())
            if later["queues"][0]["visible"] == 4:
                break
        assert first["queues"][0]["visible"] == 0
        assert later["at"] > first["at"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_workers_up_needs_the_queues(topology: Topology) -> None:
    result = runner.invoke(app, ["workers", "up"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"conveyor: queue {topology.queue_name('work')} does not exist:"
        " run `conveyor infra apply` to create it"
    )
