"""Synchronous code that waits for a coroutine on the event loop it runs on, without a thread.

Every job goes through synchronous code — Celery's tracer, the runner and its
hooks (log context, metrics, ledger, idempotency guard) — and only the handler is
a coroutine. The asyncio pool runs that synchronous path in a greenlet on the
loop's thread (:func:`run_sync`); when the runner meets the handler's coroutine it
calls :func:`await_job`, which hands the coroutine to the loop and switches the
greenlet out until the coroutine is done, while the loop runs other jobs. This is
the bridge SQLAlchemy's asyncio support uses; a greenlet costs a few KiB, not a
thread's stack.

The synchronous parts run on the loop's thread: what they block on (a DynamoDB
call of the idempotency guard or of the ledger's cancel check) delays the other
jobs of the node for that long. Ledger writes themselves go to their own threads.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import greenlet  # type: ignore[import-untyped]  # ships no type hints
from celery.exceptions import SoftTimeLimitExceeded

T = TypeVar("T")


class NotInAsyncioPoolError(RuntimeError):
    """An awaitable reached :func:`await_job` outside a greenlet started by :func:`run_sync`."""


@dataclass(frozen=True)
class _Await:
    """What the job's greenlet asks the loop to wait for."""

    awaitable: Awaitable[Any]
    timeout_s: float | None


class _JobGreenlet(greenlet.greenlet):  # type: ignore[misc]  # greenlet is untyped here
    """A greenlet that runs one job's synchronous path (marks it as ours)."""


def await_job(awaitable: Awaitable[T], timeout_s: float | None = None) -> T:
    """Wait for ``awaitable`` on the loop this job's greenlet runs on; its result.

    Called from the synchronous path of a job (the runner, for an ``async def``
    handler). ``timeout_s`` (the job type's ``max_runtime_s``): at the limit the
    coroutine is cancelled and :class:`celery.exceptions.SoftTimeLimitExceeded`
    raised here, the same failed attempt as a prefork pool's soft time limit.
    """
    current = greenlet.getcurrent()
    if not isinstance(current, _JobGreenlet):
        if asyncio.iscoroutine(awaitable):
            awaitable.close()  # never awaited: no "coroutine was never awaited" warning
        raise NotInAsyncioPoolError(
            "an async def handler can only run on a pool with worker_pool: asyncio"
        )
    result: T = current.parent.switch(_Await(awaitable, timeout_s))
    return result


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a greenlet on this loop, awaiting what it passes to :func:`await_job`.

    The greenlet starts in a copy of the caller's context; each awaitable runs as
    a task in a copy of the greenlet's context, so what the job's hooks bound
    (structlog's job id, trace id ...) is seen by the handler's coroutine.
    """
    child = _JobGreenlet(fn)
    child.gr_context = contextvars.copy_context()
    request = child.switch(*args)
    while not child.dead:
        assert isinstance(request, _Await)
        try:
            value = await _wait(request, child.gr_context.copy())
        except BaseException as exc:  # noqa: BLE001 - handed to the job's code, which decides
            request = child.throw(exc)
        else:
            request = child.switch(value)
    result: T = request
    return result


async def _wait(request: _Await, context: contextvars.Context) -> Any:
    loop = asyncio.get_running_loop()
    awaitable = request.awaitable
    coroutine: Coroutine[Any, Any, Any] = (
        awaitable if asyncio.iscoroutine(awaitable) else _awaiting(awaitable)
    )
    task = loop.create_task(coroutine, context=context)
    try:
        # asyncio.wait, not wait_for: a TimeoutError the handler raises itself (an
        # HTTP client's) is its own failure, not the runtime limit.
        await asyncio.wait({task}, timeout=request.timeout_s)
    except asyncio.CancelledError:  # the node is shutting down cold: cancel the job too
        await _cancel(task)
        raise
    if not task.done():
        await _cancel(task)
        raise SoftTimeLimitExceeded(f"cancelled at max_runtime_s ({request.timeout_s:g} s)")
    return task.result()


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it ended (its cleanup ran)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        task.exception()  # retrieved: no "exception was never retrieved" warning


async def _awaiting(awaitable: Awaitable[T]) -> T:
    return await awaitable


def run_to_completion(awaitable: Awaitable[T], timeout_s: float | None = None) -> T:
    """Run ``awaitable`` on a new event loop until it is done (no asyncio pool: AWS Lambda).

    The Lambda adapter runs one record at a time, so an ``async def`` handler gets a
    loop of its own; ``timeout_s`` as in :func:`await_job`.
    """

    async def bounded() -> T:
        result: T = await _wait(_Await(awaitable, timeout_s), contextvars.copy_context())
        return result

    return asyncio.run(bounded())
