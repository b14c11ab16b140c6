"""Fixtures for the embedded emulator's tests.

Every fixture honours ``CONVEYOR_EMULATOR_FIXES`` (default ``all``), so the
failure of each fix's test without its fix can be shown again at any time:
``CONVEYOR_EMULATOR_FIXES=none pytest tests/emulator`` fails, and so does
leaving out any one fix by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.sqs.models import SQSBackend, sqs_backends

from infra.emulator import EmulatorProcess
from infra.emulator.fixes import apply_fixes, revert_fixes, selected_fixes_from_env

REGION = "us-east-1"


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    """A real moto server in a child process, fixed as CONVEYOR_EMULATOR_FIXES says."""
    with EmulatorProcess() as process:  # the child reads CONVEYOR_EMULATOR_FIXES itself
        yield process


@pytest.fixture
def env_fixes() -> Iterator[list[str]]:
    """moto in this process with the fixes CONVEYOR_EMULATOR_FIXES selects, reverted after."""
    revert_fixes()
    applied = apply_fixes(selected_fixes_from_env())
    try:
        yield applied
    finally:
        revert_fixes()


@pytest.fixture
def no_fixes() -> Iterator[None]:
    """moto in this process exactly as shipped (for tests showing what a fix is for)."""
    revert_fixes()
    yield
    revert_fixes()


@pytest.fixture
def aws() -> Iterator[None]:
    """In-process moto (mock_aws); state is dropped afterwards."""
    with mock_aws():
        yield


@pytest.fixture
def sqs(aws: None) -> Any:
    """A boto3 SQS client talking to in-process moto."""
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def backend(aws: None) -> SQSBackend:
    """moto's SQS backend behind :func:`sqs`."""
    backend: SQSBackend = sqs_backends[DEFAULT_ACCOUNT_ID][REGION]
    return backend
