"""pydantic's ValidationError as one line for a person: ``field.path: message; …``.

The envelope, API key files, job payloads (the API's and the workers') and the API's
settings all report invalid input this way. Only locations and pydantic's messages
are used, never the input: a payload's values must not reach logs, answers or
failure records.
"""

from __future__ import annotations

from pydantic import ValidationError


def errors_line(
    exc: ValidationError,
    *,
    whole: str | None = None,
    prefix: str = "",
    sep: str = ".",
    upper: bool = False,
) -> str:
    """Every error of ``exc`` as ``<location>: <message>``, joined with ``"; "``.

    The location is the error's path joined with ``sep`` (upper-cased when ``upper``)
    after ``prefix``. An error about the input as a whole (an empty path) is labelled
    ``whole``, or is its message alone when ``whole`` is None.
    """
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        path = sep.join(str(p) for p in error["loc"])
        label = (prefix + (path.upper() if upper else path)) if path else whole
        parts.append(error["msg"] if label is None else f"{label}: {error['msg']}")
    return "; ".join(parts)
