"""Fixtures of the fault suite and its ``faults`` marker (its figures: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import cluster

__all__ = ["cluster"]  # the fixture every scenario takes


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.faults)
