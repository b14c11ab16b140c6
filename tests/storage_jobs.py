"""Handlers for the storage tests' topology (tests/fixtures/storage.yaml).

Each run appends one JSON line to ``$CONVEYOR_TEST_OUTBOX/<job id>.jsonl`` with a
digest of the payload the handler saw, so a test in another process can check
that a claim-checked payload arrived whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from conveyor import JobContext

#: How long a gated handler waits for its gate before giving up (a test failed).
GATE_TIMEOUT_S = 60.0


class Blob(BaseModel):
    """A label, some bulk, and optionally a file whose existence lets the handler finish."""

    label: str
    blob: str = ""
    gate: str | None = None


def _record(payload: Blob, ctx: JobContext, outcome: str) -> None:
    line = {
        "job_id": ctx.job_id,
        "attempt": ctx.attempt,
        "queue": ctx.queue,
        "label": payload.label,
        "size": len(payload.blob.encode("utf-8")),
        "sha256": hashlib.sha256(payload.blob.encode("utf-8")).hexdigest(),
        "outcome": outcome,
    }
    outbox = Path(os.environ["CONVEYOR_TEST_OUTBOX"])
    with open(outbox / f"{ctx.job_id}.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def echo(payload: Blob, ctx: JobContext) -> None:
    """Records what it saw; with a gate, first waits (polling) for the gate file to exist."""
    if payload.gate is not None:
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not Path(payload.gate).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    _record(payload, ctx, "ok")


def fail(payload: Blob, ctx: JobContext) -> None:
    """Fails every attempt (retried, then dead-lettered with attempts_exhausted)."""
    _record(payload, ctx, "failed")
    raise ValueError(f"cannot process {payload.label}")
