"""Text from messages and files, made safe to print on a terminal.

A DLQ holds whatever was published: a job type, an error message or a body may
carry terminal escape sequences (ESC, CSI, OSC…) that would repaint the screen,
retitle the window or hide lines of a redrive preview. Everything the DLQ and
scaling commands print that came from outside goes through :func:`printable`,
and JSON they print through :func:`printable_json`.
"""

from __future__ import annotations

import re

# C0 controls and DEL, C1 controls, lone surrogates (a JSON "\udcff" escape, which
# also cannot be encoded for the terminal), the line and paragraph separators, and
# the bidirectional overrides ("Trojan Source": text shown in another order).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_KEEP_NEWLINES = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\e"}
# Inside JSON strings, where every such character may be written as \uXXXX (C0
# controls are escaped by json.dumps already; the others are not without ensure_ascii).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object, *, multiline: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\e``, ``\\x9b``, ``\\u202e``).

    ``multiline`` keeps plain newlines, for fields meant to span lines (a
    traceback, a whole body); ``\\r`` is escaped either way.
    """
    pattern = _UNSAFE_KEEP_NEWLINES if multiline else _UNSAFE
    return pattern.sub(_escape, str(text))


def printable_json(text: str) -> str:
    """A JSON document (from ``json.dumps(..., ensure_ascii=False)``) safe for a terminal.

    The characters :func:`printable` escapes become ``\\uXXXX`` escapes: the
    result is still valid JSON that decodes to the same values.
    """
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
