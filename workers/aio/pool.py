"""The Celery pool class of ``worker_pool: asyncio``: one event loop, many jobs in flight.

Celery has no asyncio pool, so this is one (selected by its class path, see
:data:`POOL_CLASS`). The consumer hands it a job as it hands any pool one:
``apply_async(target, args, callback=..., accept_callback=...)``, where ``target``
is Celery's tracer for the task. Each job becomes one asyncio task on the pool's
loop (one thread per node, whatever the concurrency); the task runs the tracer in
a greenlet (:func:`workers.aio.bridge.run_sync`), so the same synchronous path as
on the other pools — task signals, the runner, its hooks, the outcome sent back
through the request's callbacks — surrounds the ``async def`` handler, which the
runner awaits on the loop. How many jobs are in flight is bounded by Celery's
prefetch (concurrency times 1), as for the threads pool.

Stopping: a warm shutdown (SIGTERM, recycling) waits for every job in flight to
finish (the node's grace period bounds it); a cold one cancels the jobs' tasks:
the cancellation reaches the handler as :class:`asyncio.CancelledError`, the
attempt ends as a lost worker, and the message is made visible again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from celery.concurrency.base import BasePool, apply_target

from infra.logs import get_logger
from workers import compat
from workers.aio.bridge import run_sync

log = get_logger("conveyor.worker")

compat.require("celery.concurrency.base.apply_target")

#: What ``worker_pool`` is set to in Celery's configuration for an asyncio pool.
POOL_CLASS = "workers.aio.pool:AsyncioPool"
#: How long a cold shutdown waits for cancelled jobs to report before the loop stops.
CANCEL_WAIT_S = 5.0
#: How often a stop waiting for the jobs in flight checks that the loop still runs.
SHUT_CHECK_S = 0.2


@dataclass(frozen=True)
class _Job:
    """What Celery's apply_async passed for one job."""

    target: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    callback: Callable[..., Any] | None
    accept_callback: Callable[..., Any] | None


class JobHandle:
    """What ``apply_async`` returns: the job's asyncio task, once it was created.

    Celery keeps a weak reference to it in the request and calls :meth:`terminate`
    when a cold shutdown cancels the request.
    """

    def __init__(self) -> None:
        self.done: Future[None] = Future()
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Set by :meth:`terminate`; a job not started yet is then cancelled at its start.
        self.cancelled = False

    def terminate(self, signal: int | None = None) -> None:
        """Cancel the job (from any thread): ``CancelledError`` in the handler."""
        self.cancelled = True  # first: the loop's _start checks it after setting task
        loop, task = self.loop, self.task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(task.cancel)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the job ended (or ``timeout``)."""
        try:
            self.done.result(timeout)
        except TimeoutError:
            return


@compat.overrides
class AsyncioPool(BasePool):
    """Runs jobs as tasks on one asyncio event loop in a thread of the node."""

    #: Stopped from the consumer's thread, never from inside a signal handler.
    signal_safe = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- Celery's pool interface -------------------------------------------------------

    def on_start(self) -> None:
        """Start the event loop in its own thread."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="conveyor-aio-loop", daemon=True)
        self._thread.start()
        ready.wait()
        self.loop = loop
        log.info("worker.asyncio_pool_started", max_in_flight=self.limit)

    def on_apply(  # type: ignore[override]  # the stubs type it as (*args, **kwargs)
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        **_: Any,
    ) -> JobHandle:
        """Start the job on the loop (called from the consumer's thread)."""
        assert self.loop is not None, "the pool was not started"
        handle = JobHandle()
        job = _Job(target, args or (), kwargs or {}, callback, accept_callback)
        self.loop.call_soon_threadsafe(self._start, handle, job)
        return handle

    def on_stop(self) -> None:
        """Warm stop: wait for the jobs in flight, then stop the loop."""
        self._shut(cancel=False)

    def on_terminate(self) -> None:
        """Cold stop: cancel the jobs in flight, let them report, then stop the loop."""
        self._shut(cancel=True)

    def terminate_job(self, pid: int, signal: int | None = None) -> None:
        """Nothing to do by process id: Celery then cancels the job through its :class:`JobHandle`.

        A cold shutdown cancels every active request this way (``Request.cancel``
        calls this, then the handle's ``terminate``); the base class would raise.
        """

    # -- on the loop -----------------------------------------------------------------

    def _start(self, handle: JobHandle, job: _Job) -> None:
        assert self.loop is not None
        task = self.loop.create_task(
            run_sync(
                apply_target,
                job.target,
                job.args,
                job.kwargs,
                job.callback,
                job.accept_callback,
                os.getpid(),
                os.getpid,
                (),
                time.monotonic,
            )
        )
        self._tasks.add(task)
        handle.task, handle.loop = task, self.loop
        if handle.cancelled:  # cancelled before it started: it reports as cancelled
            task.cancel()

        def finished(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("worker.asyncio_job_crashed", error=repr(task.exception()))
            handle.done.set_result(None)

        task.add_done_callback(finished)

    async def _drain(self, cancel: bool) -> None:
        tasks = set(self._tasks)
        if cancel:
            for task in tasks:
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_WAIT_S if cancel else None)

    def _shut(self, *, cancel: bool) -> None:
        # Also re-entered from a signal handler: a cold shutdown (SIGQUIT at the end
        # of the grace period) stops the pool while the warm stop still waits here.
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        try:
            drained = asyncio.run_coroutine_threadsafe(self._drain(cancel), loop)
        except RuntimeError:  # the loop is closed: stopped already
            return
        while thread.is_alive():
            try:
                drained.result(timeout=SHUT_CHECK_S)
                break
            except TimeoutError:
                continue  # the loop may have been stopped by a re-entrant call
            except Exception:  # the drain itself failed: stop anyway
                log.exception("worker.asyncio_pool_drain_failed")
                break
        if self.loop is loop:
            self.loop = None
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(CANCEL_WAIT_S)
