"""Reading queues.yaml: YAML (with duplicate keys refused), the model, the static checks."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from infra.settings import load_settings
from infra.topology.checks import check_topology
from infra.topology.errors import Problem, TopologyError
from infra.topology.imports import add_search_path
from infra.topology.model import Topology


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return dict(loader.construct_mapping(node))


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _key(part: int | str) -> str:
    """A key as written, or quoted when it is empty or holds control characters or spaces
    at its ends (so that the error stays one readable line)."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def _quoted(part: int | str) -> str:
    key = _key(part)
    return key if key != str(part) else f"'{key}'"


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{_key(part)}" if out else _key(part))
    return out


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model accepts at the mapping that holds ``loc``'s last key."""
    model: Any = Topology
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return []
            model = field.annotation
        else:  # a dict[str, Model] or list[Model]: step into the value type
            args = getattr(model, "__args__", ())
            model = args[-1] if args else None
        # unwrap Optional[...] and Annotated[...]
        while (
            model is not None and not (isinstance(model, type)) and getattr(model, "__args__", None)
        ):
            candidates = [a for a in model.__args__ if a is not type(None)]
            if len(candidates) != 1 or getattr(model, "__origin__", None) in (dict, list):
                break
            model = candidates[0]
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(model.model_fields)
    return []


def _problems_from_validation(error: ValidationError) -> list[Problem]:
    problems = []
    for err in error.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            problems.append(Problem(_path(loc), f"unknown key {_quoted(loc[-1])}{hint}"))
        elif err["type"] == "missing":
            problems.append(Problem(_path(loc), "required key is missing"))
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(Problem(_path(loc), message))
    return problems


def parse_topology(
    text: str, *, source: str = "queues.yaml", environment: str | None = None
) -> Topology:
    """Validate the text of a queues.yaml; raise :class:`TopologyError` listing every problem."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TopologyError(
            source, [Problem(where, f"YAML syntax error: {exc.problem or exc}")]
        ) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML refuses (a control character): PyYAML gives an offset, not a
        # mark, and a second line about "<unicode string>"; name line and column instead.
        start = text.rfind("\n", 0, exc.position) + 1
        line = text.count("\n", 0, exc.position) + 1
        where = f"line {line}, column {exc.position - start + 1}"
        char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        problem = f"YAML syntax error: unacceptable character #x{char:04x} ({exc.reason})"
        raise TopologyError(source, [Problem(where, problem)]) from None
    except yaml.YAMLError as exc:
        raise TopologyError(source, [Problem("", f"YAML syntax error: {exc}")]) from None
    if not isinstance(data, dict):
        raise TopologyError(
            source,
            [Problem("", "the file must be a mapping of keys (topics, queues, job_types, …)")],
        )
    if environment:
        data = {**data, "environment": environment}
    try:
        topology = Topology.model_validate(data)
    except ValidationError as exc:
        problems = _problems_from_validation(exc)
        # An unknown key must not hide the file's other problems: check the rest without it.
        partial = _without_unknown_keys(data, exc)
        if partial is not None:
            problems += [p for p in check_topology(partial) if p not in problems]
        raise TopologyError(source, problems, partial=partial) from None
    problems = check_topology(topology)
    if problems:
        raise TopologyError(source, problems, partial=topology)
    return topology


def _without_unknown_keys(data: dict[str, Any], error: ValidationError) -> Topology | None:
    """The topology with the unknown keys ``error`` names removed, when that is its only
    kind of problem (else None: a model cannot be built to check the rest against)."""
    unknown = [tuple(e["loc"]) for e in error.errors() if e["type"] == "extra_forbidden"]
    if not unknown or len(unknown) != len(error.errors()):
        return None
    stripped: Any = copy.deepcopy(data)
    for loc in unknown:
        parent = stripped
        for part in loc[:-1]:
            parent = parent[part]
        parent.pop(loc[-1], None)
    try:
        return Topology.model_validate(stripped)
    except (ValidationError, KeyError, IndexError, TypeError):
        return None


def load_topology(path: str | os.PathLike[str], *, environment: str | None = None) -> Topology:
    """Load and check queues.yaml at ``path``.

    ``environment`` (else ``CONVEYOR_ENVIRONMENT``) overrides the file's ``environment``,
    so one file can be provisioned side by side under several names.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TopologyError(source, [Problem("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(source, [Problem("", f"cannot read the file: {exc}")]) from None
    env = environment or load_settings().topology.environment or None
    topology = parse_topology(text, source=source, environment=env)
    use_project_dir(path)
    return topology


def use_project_dir(queues_file: str | os.PathLike[str]) -> None:
    """Let handler and payload modules beside ``queues_file`` (``mypkg/handlers.py``,
    ``sample_jobs/``) be imported, unless ``CONVEYOR_IMPORT_PROJECT_DIR=false``.

    The one mechanism every role uses (:func:`load_topology` calls it: ``check``, ``up``,
    ``api``, ``worker``, the Lambda adapter; a role that reads queues.yaml otherwise calls
    it itself). Child processes get it by loading the topology themselves, and a worker's
    forked pool processes inherit the parent's import path.
    """
    if load_settings().topology.import_project_dir:
        add_search_path(Path(queues_file).parent)
