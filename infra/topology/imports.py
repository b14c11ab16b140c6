"""Resolving the ``module:attribute`` import paths queues.yaml names (payload models, handlers)."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from infra.topology.errors import Problem, TopologyError
from infra.topology.model import Topology
from infra.validation import errors_line


def add_search_path(directory: Path) -> None:
    """Let the modules next to queues.yaml (handlers, payload models) be imported.

    Appended, not prepended, so an installed package of the same name still wins;
    the same as running ``python -m`` from that directory, without shadowing.
    """
    entry = str(directory.resolve())
    if entry not in sys.path:
        sys.path.append(entry)


def import_object(path: str) -> Any:
    """The object at ``package.module:attr.sub``; ImportError/AttributeError name the path."""
    module_name, _, attr_path = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def payload_model(topology: Topology, job_type: str) -> type[BaseModel]:
    """The pydantic model that validates ``job_type``'s payload."""
    obj = import_object(topology.job_types[job_type].payload)
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        raise TypeError(f"{topology.job_types[job_type].payload} is not a pydantic model class")
    return obj


def _check(path: str, key: str, *, want_model: bool) -> Problem | None:
    try:
        obj = import_object(path)
    except (ImportError, AttributeError) as exc:
        return Problem(key, f"cannot import '{path}': {exc}")
    if want_model and not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        return Problem(key, f"'{path}' is not a pydantic model class")
    if not want_model and not callable(obj):
        return Problem(key, f"'{path}' is not callable")
    return None


def _schedule_data_problems(topology: Topology, *, failed: set[str]) -> list[Problem]:
    """Each schedule's ``data`` validated against its job type's payload model, as the API
    validates a job's payload (models that failed to import are reported already)."""
    problems = []
    for name, schedule in topology.schedules.items():
        jt = topology.job_types.get(schedule.job_type)
        if jt is None or f"job_types.{schedule.job_type}.payload" in failed:
            continue
        try:
            payload_model(topology, schedule.job_type).model_validate(schedule.data)
        except ValidationError as exc:
            problems.append(
                Problem(
                    f"schedules.{name}.data",
                    f"not a valid {schedule.job_type} payload: {errors_line(exc, whole='data')}",
                )
            )
    return problems


def check_imports(
    topology: Topology, *, source: str = "queues.yaml", handlers: bool = True
) -> None:
    """Import every payload model (and handler, if ``handlers``); raise TopologyError if any fails.

    Every schedule's ``data`` is validated against its job type's payload model too.

    Kept apart from the static checks so that the producer API, which never runs
    handlers, does not need the workers' code importable.
    """
    problems: list[Problem] = []
    for name, jt in topology.job_types.items():
        if (p := _check(jt.payload, f"job_types.{name}.payload", want_model=True)) is not None:
            problems.append(p)
        if (
            handlers
            and jt.handler
            and (p := _check(jt.handler, f"job_types.{name}.handler", want_model=False))
        ):
            problems.append(p)
    problems.extend(_schedule_data_problems(topology, failed={p.path for p in problems}))
    if handlers:
        for qname, q in topology.queues.items():
            for jt_name, path in q.handlers.items():
                key = f"queues.{qname}.handlers.{jt_name}"
                if (p := _check(path, key, want_model=False)) is not None:
                    problems.append(p)
    if handlers:
        problems.extend(_handler_kind_problems(topology, failed={p.path for p in problems}))
    if problems:
        raise TopologyError(source, problems)


def is_async_handler(obj: object) -> bool:
    """Whether calling ``obj`` returns a coroutine (``async def``, also as a callable object)."""
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004 - a class instance with async __call__
    )


def _handler_key(topology: Topology, queue: str, job_type: str) -> str:
    """The queues.yaml key that names the handler ``queue`` runs for ``job_type``."""
    if job_type in topology.queues[queue].handlers:
        return f"queues.{queue}.handlers.{job_type}"
    return f"job_types.{job_type}.handler"


def _handler_kind_problems(topology: Topology, *, failed: set[str]) -> list[Problem]:
    """An ``async def`` handler on a pool that is not asyncio, or a sync one on an asyncio pool.

    Every handler a pool's queues run is resolved (the job type's default handler
    and the queue's ``handlers:`` overrides); one that failed to import is reported
    already. A prefork, threads or solo pool would call an ``async def`` handler and
    get a coroutine it never runs; an asyncio pool would run a sync handler on its
    event loop, stalling every other job of the node while it blocks.
    """
    problems = []
    for pname, pool in topology.pools.items():
        for queue in pool.queues:
            if queue not in topology.queues:
                continue  # reported by the static checks
            for job_type in topology.job_types_of_queue(queue):
                path = topology.handler_for(queue, job_type)
                key = _handler_key(topology, queue, job_type)
                if path is None or key in failed:
                    continue
                try:
                    is_async = is_async_handler(import_object(path))
                except (ImportError, AttributeError):
                    continue  # reported by _check
                if is_async == (pool.worker_pool == "asyncio"):
                    continue
                wrong = (
                    f"'{path}' ({key}) is async def: an async def handler needs"
                    " worker_pool: asyncio"
                    if is_async
                    else f"'{path}' ({key}) is a plain def: an asyncio pool runs only"
                    " async def handlers (use worker_pool: threads for blocking code)"
                )
                problems.append(
                    Problem(
                        f"pools.{pname}.worker_pool",
                        f"{pool.worker_pool} pool runs job type '{job_type}' on queue"
                        f" '{queue}', but its handler {wrong}",
                    )
                )
    return problems
