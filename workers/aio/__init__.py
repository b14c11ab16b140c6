"""The asyncio pool: ``async def`` handlers, many jobs at once on one event loop.

Select it with ``worker_pool: asyncio`` in queues.yaml. :mod:`workers.aio.pool`
is the Celery pool class (one event loop in one thread of the node);
:mod:`workers.aio.bridge` lets the synchronous path every job takes (Celery's
tracer, the runner, its hooks) wait for the handler's coroutine on that loop
without a thread per job.
"""
