"""A validator of CloudWatch Embedded Metric Format documents, written from the specification.

It checks what the specification requires of a document (not what our writer
happens to produce): the ``_aws`` metadata with an integer millisecond
``Timestamp`` and a ``CloudWatchMetrics`` array of metric directives; each
directive's ``Namespace``, ``Dimensions`` (an array of dimension sets, each an
array of at most 30 strings naming root members whose values are strings) and
``Metrics`` (at most 100 definitions with a ``Name``, an optional ``Unit`` from
CloudWatch's list and an optional ``StorageResolution`` of 1 or 60); every
metric name a root member whose value is a number or an array of at most 100
numbers. Returns the problems found (empty: valid).
"""

from __future__ import annotations

import json
from typing import Any

#: The units CloudWatch accepts (MetricDatum's Unit).
UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)
MAX_DIMENSIONS_PER_SET = 30
MAX_METRICS_PER_DIRECTIVE = 100
MAX_VALUES_PER_METRIC = 100
#: The document must fit a CloudWatch Logs event (the specification's limit: 1 MB).
MAX_DOCUMENT_BYTES = 1024 * 1024


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dimension_problems(where: str, dimensions: Any, root: dict[str, Any]) -> list[str]:
    if not isinstance(dimensions, list):
        return [f"{where}.Dimensions must be an array of dimension sets"]
    problems = []
    for j, dimension_set in enumerate(dimensions):
        if not isinstance(dimension_set, list) or not all(
            isinstance(d, str) for d in dimension_set
        ):
            problems.append(f"{where}.Dimensions[{j}] must be an array of strings")
            continue
        if len(dimension_set) > MAX_DIMENSIONS_PER_SET:
            problems.append(f"{where}.Dimensions[{j}] has more than 30 dimensions")
        for name in dimension_set:
            if name not in root:
                problems.append(f"dimension {name!r} is not a root member")
            elif not isinstance(root[name], str) or not 1 <= len(root[name]) <= 1024:
                problems.append(f"dimension {name!r} must be a string of 1 to 1024 characters")
    return problems


def _definition_problems(where: str, definition: Any, root: dict[str, Any]) -> list[str]:
    if not isinstance(definition, dict) or not isinstance(definition.get("Name"), str):
        return [f"{where}: a metric definition without a Name"]
    problems = []
    name = definition["Name"]
    if not 1 <= len(name) <= 255:
        problems.append(f"metric name {name!r} must have 1 to 255 characters")
    if "Unit" in definition and definition["Unit"] not in UNITS:
        problems.append(f"metric {name!r} has an unknown Unit {definition['Unit']!r}")
    if definition.get("StorageResolution", 60) not in (1, 60):
        problems.append(f"metric {name!r}: StorageResolution must be 1 or 60")
    value = root.get(name)
    if name not in root:
        problems.append(f"metric {name!r} is not a root member")
    elif isinstance(value, list):
        if len(value) > MAX_VALUES_PER_METRIC or not all(_number(v) for v in value):
            problems.append(f"metric {name!r} must be an array of at most 100 numbers")
    elif not _number(value):
        problems.append(f"metric {name!r} must be a number")
    return problems


def _directive_problems(i: int, directive: Any, root: dict[str, Any]) -> list[str]:
    where = f"CloudWatchMetrics[{i}]"
    if not isinstance(directive, dict):
        return [f"{where} is not an object"]
    problems = []
    unknown = set(directive) - {"Namespace", "Dimensions", "Metrics"}
    if unknown:
        problems.append(f"{where} has members the specification does not define: {unknown}")
    namespace = directive.get("Namespace")
    if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255:
        problems.append(f"{where}.Namespace must be a string of 1 to 255 characters")
    problems.extend(_dimension_problems(where, directive.get("Dimensions"), root))
    metrics = directive.get("Metrics")
    if not isinstance(metrics, list) or not metrics:
        return [*problems, f"{where}.Metrics must be a non-empty array"]
    if len(metrics) > MAX_METRICS_PER_DIRECTIVE:
        problems.append(f"{where}.Metrics has more than 100 metric definitions")
    for definition in metrics:
        problems.extend(_definition_problems(where, definition, root))
    return problems


def emf_problems(line: str) -> list[str]:
    """What keeps ``line`` from being a valid EMF document (empty: nothing)."""
    if len(line.encode()) > MAX_DOCUMENT_BYTES:
        return ["the document is larger than a log event may be"]
    try:
        root = json.loads(line)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(root, dict):
        return ["the root is not an object"]
    meta = root.get("_aws")
    if not isinstance(meta, dict):
        return ["no _aws metadata object"]
    problems = []
    timestamp = meta.get("Timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        problems.append("_aws.Timestamp must be an integer of milliseconds since the epoch")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        return [*problems, "_aws.CloudWatchMetrics must be an array"]
    for i, directive in enumerate(directives):
        problems.extend(_directive_problems(i, directive, root))
    return problems


def emf_lines(output: str) -> list[dict[str, Any]]:
    """The EMF documents among ``output``'s lines (JSON objects with ``_aws``), parsed."""
    found = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            found.append(json.loads(line))
    return found
