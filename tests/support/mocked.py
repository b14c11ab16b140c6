"""moto in this process (``mock_aws``), for unit tests only: integration tests use the server.

:func:`in_process_aws` clears every variable that would send boto3 elsewhere (an
endpoint, a profile, a session, an account id), sets fake credentials and one
attempt per call (tests must see errors), and gives Conveyor fresh clients.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto import mock_aws

from infra import aws

#: Set for every in-process test: fake credentials, one region, no retries.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_MAX_ATTEMPTS": "1",
}
#: Removed: they would point boto3 at another endpoint, account or retry policy.
FOREIGN = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_RETRY_MODE", "CONVEYOR_AWS_ACCOUNT_ID")


def clear_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point boto3 at nothing but moto's fake account (for the test's duration)."""
    for key in [*FOREIGN, *(k for k in os.environ if k.startswith("AWS_ENDPOINT_URL"))]:
        monkeypatch.delenv(key, raising=False)
    for key, value in FAKE_AWS.items():
        monkeypatch.setenv(key, value)


@contextmanager
def in_process_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's ``mock_aws`` with a clean environment and fresh Conveyor clients."""
    clear_aws_env(monkeypatch)
    with mock_aws():
        # Inside: moto has set its fake credentials. A client built before (e.g. by a
        # ledger writer thread an earlier test left behind) would be cached on a session
        # that found no credentials.
        aws.reset_clients()
        yield
    aws.reset_clients()
