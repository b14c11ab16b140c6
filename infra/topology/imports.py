"""Resolving the ``module:attribute`` import paths queues.yaml names (payload models, handlers)."""

from __future__ import annotations

import importlib
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
    if problems:
        raise TopologyError(source, problems)
