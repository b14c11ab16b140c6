"""Fixtures of the fault suite and its ``faults`` marker (its figures: tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.provision import apply
from infra.topology import load_topology
from tests import REPO
from tests.faults.harness import TOPOLOGY, Cluster
from tests.support.emulator import AwsEnv


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def cluster(aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """tests/faults/faults.yaml provisioned under a fresh name; its processes die at teardown."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(TOPOLOGY))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # worker processes import tests.jobs
    topology = load_topology(TOPOLOGY)
    apply(topology)
    system = Cluster(topology, dict(os.environ), outbox, tmp_path)
    try:
        yield system
    finally:
        system.close()
