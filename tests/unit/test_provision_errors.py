"""AWS failures become one readable ProvisionError line that names the resource; no AWS needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from conveyor.cli.infra import app
from infra import aws, provision
from infra.aws import lookup
from infra.errors import AwsError, ProvisionError
from infra.provision import Change
from infra.provision.apply import _execute, _Runner
from infra.provision.diff import CreateQueue, CreateTopic, Operation, Step
from infra.topology import Topology, load_topology

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """AWS settings that point at a port nothing listens on (connection refused at once)."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_RETRY_MODE", "CONVEYOR_ENVIRONMENT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "CONVEYOR_AWS_ACCOUNT_ID": "123456789012",
        "CONVEYOR_QUEUES_FILE": str(REPO / "queues.yaml"),
    }.items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    yield
    aws.reset_clients()


@pytest.fixture
def topology(unreachable: None) -> Topology:
    return load_topology(REPO / "queues.yaml")


def test_unreachable_endpoint_names_the_resource(topology: Topology) -> None:
    with pytest.raises(ProvisionError) as info:
        provision.plan(topology)
    message = str(info.value)
    assert message.startswith("looking up queue conveyor-dev-images-dlq: ")
    assert "Could not connect to the endpoint URL" in message
    assert "\n" not in message


def test_sts_failure_is_reported_as_such(
    topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_AWS_ACCOUNT_ID")
    with pytest.raises(AwsError, match=r"^finding the AWS account \(sts:GetCallerIdentity\)"):
        lookup.topic_arn(topology, "orders")


def test_cli_prints_one_line_and_exits_1(unreachable: None) -> None:
    for command in (["plan"], ["apply", "--json"], ["destroy", "--yes"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1, result.output
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("conveyor: looking up queue conveyor-dev-")
        assert "Traceback" not in result.output


def test_execute_stops_at_the_first_error_and_says_what_was_done(
    unreachable: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[Operation] = []

    def fake_run(self: _Runner, op: Operation) -> None:
        if isinstance(op, CreateTopic):
            raise ClientError(
                {"Error": {"Code": "AuthorizationError", "Message": "not allowed"}}, "CreateTopic"
            )
        ran.append(op)

    monkeypatch.setattr(_Runner, "_run", fake_run)
    steps = [
        Step(0, Change("create", "queue", "q"), (CreateQueue("q", {}, {}),)),
        Step(1, Change("note", "queue", "q", {"message": "m"})),
        Step(2, Change("create", "topic", "t"), (CreateTopic("t", {}, {}),)),
        Step(3, Change("create", "queue", "never"), (CreateQueue("never", {}, {}),)),
    ]
    with pytest.raises(ProvisionError) as info:
        _execute(steps, {})
    assert str(info.value) == "creating topic t: AuthorizationError: not allowed"
    assert [c.name for c in info.value.applied] == ["q", "q"]
    assert [c.action for c in info.value.applied] == ["create", "note"]
    assert ran == [CreateQueue("q", {}, {})]
