"""The error the operator commands of workers/ (DLQ operations, scaling) raise."""

from __future__ import annotations


class CommandError(Exception):
    """A command cannot go on; ``str(exc)`` is one line for the user.

    ``usage`` marks mistakes in what was asked (exit 2) rather than failures of
    what was attempted (exit 1).
    """

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
