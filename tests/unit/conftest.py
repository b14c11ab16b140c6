"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mocked import in_process_aws


@pytest.fixture
def mocked_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """boto3 answered by moto in this process (unit tests only; integration uses the server)."""
    with in_process_aws(monkeypatch):
        yield
