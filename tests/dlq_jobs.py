"""Handlers for the DLQ tests' topology (tests/fixtures/dlq.yaml).

``fragile`` models a job whose dependency is down: it fails while the file
``$CONVEYOR_TEST_OUTBOX/dependency-down`` exists and succeeds once the test removes
it — the "fixed in between" of a redrive. Like :mod:`tests.jobs`, each attempt
appends a line to ``$CONVEYOR_TEST_OUTBOX/<job id>.jsonl``. (Seeding a DLQ the way a
worker does is :func:`tests.support.queues.dead_letter`.)
"""

from __future__ import annotations

import os
from pathlib import Path

from conveyor import JobContext
from tests.jobs import Note, _record

#: The flag file, relative to the outbox, whose presence makes ``fragile`` fail.
DEPENDENCY_DOWN = "dependency-down"


def fragile(payload: Note, ctx: JobContext) -> None:
    """Fails while the dependency is down; succeeds after."""
    if (Path(os.environ["CONVEYOR_TEST_OUTBOX"]) / DEPENDENCY_DOWN).exists():
        _record(ctx, "failed")
        raise ConnectionError(f"dependency down while processing {payload.label}")
    _record(ctx, "ok")
