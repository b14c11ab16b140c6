"""``async def`` handlers for the asyncio pool's tests (tests/fixtures/pools.yaml).

The same behaviours as :mod:`tests.jobs`, awaiting instead of blocking: each
attempt appends JSON lines to ``$CONVEYOR_TEST_OUTBOX/<job id>.jsonl``.
"""

from __future__ import annotations

import asyncio

from conveyor import JobContext, PermanentError
from tests.jobs import Flaky, Note, Sleep, _record


async def record(payload: Note, ctx: JobContext) -> None:
    """Succeeds, leaving a trace."""
    await asyncio.sleep(0)
    _record(ctx, "ok")


async def flaky(payload: Flaky, ctx: JobContext) -> None:
    """Fails with a transient error before ``succeed_on_attempt``."""
    await asyncio.sleep(0)
    if ctx.attempt < payload.succeed_on_attempt:
        _record(ctx, "failed")
        raise ConnectionError(f"transient failure on attempt {ctx.attempt}")
    _record(ctx, "ok")


async def always_fail(payload: Note, ctx: JobContext) -> None:
    """Fails every attempt with an ordinary exception (retried, then dead-lettered)."""
    await asyncio.sleep(0)
    _record(ctx, "failed")
    raise ValueError(f"cannot process {payload.label}")


async def permanent(payload: Note, ctx: JobContext) -> None:
    """Fails permanently on the first attempt."""
    await asyncio.sleep(0)
    _record(ctx, "failed")
    raise PermanentError(f"{payload.label} can never work")


async def sleep(payload: Sleep, ctx: JobContext) -> None:
    """Records its start, awaits ``payload.seconds``, records its end (or its cancellation)."""
    _record(ctx, "started")
    try:
        await asyncio.sleep(payload.seconds)
    except asyncio.CancelledError:
        _record(ctx, "cancelled")
        raise
    _record(ctx, "ok")
