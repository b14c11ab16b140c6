"""Durations in queues.yaml: a number of seconds, or a string such as ``90s``, ``5m``, ``4d``."""

from __future__ import annotations

import re

_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration_s(value: object) -> float:
    """Seconds from ``30``, ``2.5``, ``"30s"``, ``"5m"``, ``"12h"`` or ``"14d"``.

    Raises ValueError with a message fit for a configuration error.
    """
    if isinstance(value, bool):  # bool is an int subclass; "true" is not a duration
        raise ValueError(f"invalid duration {value!r}: expected seconds or a string like '30s'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            number, unit = match.groups()
            return float(number) * _UNITS_S[unit or "s"]
    raise ValueError(
        f"invalid duration {value!r}: expected seconds or a number with a unit "
        "(ms, s, m, h, d), e.g. '30s', '5m', '14d'"
    )


def format_duration_s(seconds: float) -> str:
    """``345600`` → ``'4d'``; the shortest exact unit, for messages and plans."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
