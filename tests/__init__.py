"""Conveyor's test suite."""

from pathlib import Path

#: The repository root (queues.yaml, tests/fixtures/…).
REPO = Path(__file__).resolve().parent.parent
