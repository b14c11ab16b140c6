"""Handlers for the browser tests' topology (tests/fixtures/console.yaml).

``render`` fails permanently (no retry: straight to the DLQ) while the file
``$CONVEYOR_TEST_OUTBOX/dependency-down`` exists, and succeeds once it is gone: a
dead letter worth redriving once "fixed". Each attempt appends a line to the outbox,
like :mod:`tests.jobs`.
"""

from __future__ import annotations

import os
from pathlib import Path

from conveyor import JobContext, PermanentError
from tests.dlq_jobs import DEPENDENCY_DOWN
from tests.jobs import Note, _record


def render(payload: Note, ctx: JobContext) -> None:
    """Fails permanently while the dependency is down; succeeds after."""
    if (Path(os.environ["CONVEYOR_TEST_OUTBOX"]) / DEPENDENCY_DOWN).exists():
        _record(ctx, "failed")
        raise PermanentError(f"template store unreachable while rendering {payload.label}")
    _record(ctx, "ok")
