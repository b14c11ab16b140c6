"""Every AWS read of a page under one deadline: an answer, or an error line for the banner.

A page must come back quickly with whatever it could read. botocore's own timeouts
(short ones for the console's clients) and retries can still add up to much more than
a person waits, and some reads (a DLQ peek, a pool's node scrape) are several calls.
:func:`bounded` runs the read on a shared thread pool and waits at most the deadline;
a late read finishes in the background (its own timeouts end it) and is discarded.
Any exception becomes the error line: the console shows a banner, never a 500.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from infra.aws.errors import describe_aws_error
from infra.errors import ConveyorError
from infra.logs import get_logger

T = TypeVar("T")

log = get_logger("conveyor.console")

#: Threads for page reads: a few slow AWS calls must not hold every page back.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="console-read")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """A read's value, or why there is none (one line for the error banner)."""

    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the read succeeded."""
        return self.error is None


def describe(exc: BaseException) -> str:
    """One line for an exception met while reading AWS (or the backends)."""
    if isinstance(exc, ConveyorError):
        return str(exc)
    if isinstance(exc, ClientError | BotoCoreError):
        return describe_aws_error(exc)
    return f"{type(exc).__name__}: {exc}"


def bounded(what: str, read: Callable[[], T], timeout_s: float) -> Outcome[T]:
    """``read()`` within ``timeout_s``; otherwise an :class:`Outcome` with the error."""
    future = _POOL.submit(read)
    try:
        return Outcome(value=future.result(timeout=timeout_s))
    except concurrent.futures.TimeoutError:
        log.warning("console.slow_read", what=what, timeout_s=timeout_s)
        return Outcome(error=f"{what}: no answer within {timeout_s:g} s (AWS slow or unreachable)")
    except Exception as exc:  # noqa: BLE001 - a page shows the error, whatever it is
        log.warning("console.read_failed", what=what, error=describe(exc))
        return Outcome(error=f"{what}: {describe(exc)}")
