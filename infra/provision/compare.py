"""Comparing attribute values as AWS means them, not as text.

AWS (and the emulator) may return JSON attributes re-serialised — other key
order, other whitespace, ``6`` for ``"6"``, a one-element list collapsed to its
element — and scalar attributes as ``"True"``/``"true"``/``true``. Two values
that mean the same must compare equal, or plan would report drift forever.
"""

from __future__ import annotations

import json
from typing import Any


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_canonical(v) for v in value]
        if len(items) == 1:
            # IAM-style documents treat ["x"] and "x" alike.
            return items[0]
        return tuple(sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str)))
    return scalar(value)


def scalar(value: Any) -> str | None:
    """``True``/``"TRUE"`` → ``"true"``, ``6``/``"6.0"`` → ``"6"``, ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    if number.is_integer() and "e" not in text.lower():
        return str(int(number))
    return text


def parse_json(text: str | None) -> Any:
    """The parsed JSON attribute; ``None`` for a missing, empty or ``{}`` value.

    An unparsable value is returned as the string itself, so it compares unequal
    to any document instead of failing the plan.
    """
    if text is None or not str(text).strip():
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return str(text)
    return parsed or None


def json_equal(a: str | None, b: str | None) -> bool:
    """Whether two JSON attribute values mean the same document."""
    return bool(_canonical(parse_json(a)) == _canonical(parse_json(b)))


def scalar_equal(a: Any, b: Any) -> bool:
    """Whether two scalar values mean the same (``"30"`` == ``30``, ``"True"`` == ``"true"``)."""
    return scalar(a) == scalar(b)


def is_true(value: Any) -> bool:
    """An AWS boolean attribute (``"true"``, ``True``, ``"True"``) as a bool; missing is False."""
    return scalar(value) == "true"


def tag_diffs(desired: dict[str, str], actual: dict[str, str]) -> dict[str, tuple[str | None, str]]:
    """Managed tags that are missing or differ (other tags are left alone)."""
    return {k: (actual.get(k), v) for k, v in desired.items() if actual.get(k) != v}
