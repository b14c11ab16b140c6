"""Handlers for the test topology (tests/fixtures/pipeline.yaml).

Each attempt appends one JSON line to ``$CONVEYOR_TEST_OUTBOX/<job id>.jsonl``:
an observable side effect a test can read from another process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from conveyor import JobContext, PermanentError


class Note(BaseModel):
    """A payload with a label."""

    label: str


class Sleep(BaseModel):
    """Runs for a while."""

    seconds: float


class Flaky(BaseModel):
    """Fails until the given attempt."""

    succeed_on_attempt: int


def _record(ctx: JobContext, outcome: str) -> None:
    outbox = Path(os.environ["CONVEYOR_TEST_OUTBOX"])
    line = {
        "job_id": ctx.job_id,
        "attempt": ctx.attempt,
        "queue": ctx.queue,
        "outcome": outcome,
        "at": time.time(),
        "pid": os.getpid(),
        # Which node ran it, for tests that run several.
        "node": os.environ.get("CONVEYOR_TEST_NODE", ""),
    }
    with open(outbox / f"{ctx.job_id}.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def record(payload: Note, ctx: JobContext) -> None:
    """Succeeds, leaving a trace."""
    _record(ctx, "ok")


def flaky(payload: Flaky, ctx: JobContext) -> None:
    """Fails with a transient error before ``succeed_on_attempt``."""
    if ctx.attempt < payload.succeed_on_attempt:
        _record(ctx, "failed")
        raise ConnectionError(f"transient failure on attempt {ctx.attempt}")
    _record(ctx, "ok")


def always_fail(payload: Note, ctx: JobContext) -> None:
    """Fails every attempt with an ordinary exception (retried, then dead-lettered)."""
    _record(ctx, "failed")
    raise ValueError(f"cannot process {payload.label}")


def permanent(payload: Note, ctx: JobContext) -> None:
    """Fails permanently on the first attempt."""
    _record(ctx, "failed")
    raise PermanentError(f"{payload.label} can never work")


def sleep(payload: Sleep, ctx: JobContext) -> None:
    """Records its start, works for ``payload.seconds``, records its end."""
    _record(ctx, "started")
    time.sleep(payload.seconds)
    _record(ctx, "ok")
