"""Failures of provisioning, as one readable line that names the resource and the AWS error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from infra.provision.plan import Change


class ProvisionError(Exception):
    """AWS refused or could not be reached; ``str(exc)`` is one line for the user.

    ``applied`` lists the changes that were made before the failure (apply and
    destroy stop at the first error; running them again resumes).
    """

    def __init__(self, message: str, applied: list[Change] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.applied: list[Change] = list(applied or [])


def error_code(exc: ClientError) -> str:
    """The AWS error code of ``exc`` (``""`` if the response has none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe_aws_error(exc: BotoCoreError | ClientError) -> str:
    """``AccessDenied: User … is not authorized`` or botocore's own message."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "error"
        message = error.get("Message") or str(exc)
        return f"{code}: {message}"
    return str(exc)


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Turn botocore's errors raised inside into ``ProvisionError("<doing>: <error>")``."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise ProvisionError(f"{doing}: {describe_aws_error(exc)}") from exc
