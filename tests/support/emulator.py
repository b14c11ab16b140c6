"""The plumbing of the emulator fixtures: a moto server over HTTP, and processes pointed at it.

Integration tests never use in-process mocks: they talk HTTP to the embedded
emulator (moto in server mode, with Conveyor's fixes) running as a subprocess on
a loopback port. Each test works under its own environment name, so its queues,
topics, tables and buckets are fresh (moto limits PurgeQueue to once a minute;
fresh names avoid purging at all) and tests can share one emulator — one per
pytest-xdist worker, as a session fixture is one per worker process.
:func:`sqs_client` is a client of its own for tests that must see every error.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config

from infra import aws

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: Variables that would point boto3 somewhere else than the emulator's fake account.
FOREIGN_AWS_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_RETRY_MODE")


@dataclass(frozen=True)
class AwsEnv:
    """What a test needs to talk to the emulator and to spawn processes that do too."""

    endpoint_url: str
    environment: str
    #: This process's environment with the emulator's variables: for child processes.
    env: dict[str, str]


def fresh_environment(prefix: str = "t") -> str:
    """A ``CONVEYOR_ENVIRONMENT`` no other test uses: its resource names are its own."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


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


@contextlib.contextmanager
def pointed_at(
    endpoint_url: str, environment: str, patch: pytest.MonkeyPatch, **extra: str
) -> Iterator[AwsEnv]:
    """Point this process at ``endpoint_url`` under ``environment`` (plus ``extra``
    variables) until the block ends; boto3 clients are rebuilt on the way in and out."""
    values = {**aws_environ(endpoint_url, environment), **extra}
    for key in FOREIGN_AWS_VARIABLES:
        patch.delenv(key, raising=False)
    for key, value in values.items():
        patch.setenv(key, value)
    aws.reset_clients()
    try:
        yield AwsEnv(endpoint_url, environment, {**os.environ, **values})
    finally:
        aws.reset_clients()


# No retries: a 500 from the emulator must reach the test, not be retried away.
NO_RETRIES = Config(
    retries={"max_attempts": 1, "mode": "standard"},
    connect_timeout=5,
    read_timeout=60,
    max_pool_connections=4,
)


def sqs_client(endpoint_url: str) -> SQSClient:
    """A boto3 SQS client for the emulator that never retries."""
    client: SQSClient = boto3.session.Session().client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=NO_RETRIES,
    )
    return client
