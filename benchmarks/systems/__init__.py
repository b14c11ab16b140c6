"""One driver per measured system: how to set it up, start its workers and enqueue a batch."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

#: The measured systems, in the order they run.
SYSTEMS = ("celery", "raw", "conveyor", "conveyor_otel")


def load(name: str) -> ModuleType:
    """The driver module of system ``name``."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r} (known: {', '.join(SYSTEMS)})")
    return import_module(f"benchmarks.systems.{name}")
