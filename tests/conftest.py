"""Shared fixtures: a real moto server over HTTP, and an AWS environment pointed at it.

Integration tests never use in-process mocks: the `emulator` fixture runs the
embedded emulator (moto in server mode, with Conveyor's fixes) as a subprocess
on a loopback port, and `aws` points boto3 at it through the standard variables.
Each test gets its own `environment` name, so its queues are fresh (moto limits
PurgeQueue to once a minute; fresh names avoid purging at all).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from infra import aws
from infra.emulator import EmulatorProcess


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator process for the whole session (tests isolate by resource names)."""
    with EmulatorProcess(log_path=tmp_path_factory.mktemp("emulator") / "emulator.log") as proc:
        yield proc


@dataclass(frozen=True)
class AwsEnv:
    """What a test needs to talk to the emulator and to spawn processes that do too."""

    endpoint_url: str
    environment: str
    env: dict[str, str]


def aws_environ(endpoint_url: str, environment: str) -> dict[str, str]:
    """Environment variables that point boto3 (and Conveyor) at the emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # Tests must see the emulator's errors, not have botocore retry them away.
        "AWS_MAX_ATTEMPTS": "1",
        "CONVEYOR_ENVIRONMENT": environment,
        "CONVEYOR_LOG_FORMAT": "json",
        # API processes started by tests run without keys unless the test is about auth (C2).
        "CONVEYOR_API_AUTH": "none",
    }


@pytest.fixture
def aws_env(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    """Point this process at the emulator under a fresh environment name."""
    environment = f"t{uuid.uuid4().hex[:10]}"
    values = aws_environ(emulator.endpoint_url, environment)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_RETRY_MODE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    yield AwsEnv(emulator.endpoint_url, environment, {**os.environ, **values})
    aws.reset_clients()
