"""Conveyor: a producer-consumer job system on Amazon SNS and SQS.

The public API, for handler authors and producers::

    from conveyor import JobContext, PermanentError, RetryLater   # handlers
    from conveyor import Client, EnqueueError                      # producers

Every name is imported on first use (PEP 562), so a handler module loads neither
the producer API nor its client, and a producer loads no Celery or FastAPI.
``conveyor.lambda_handler`` is the AWS Lambda entry point (docs/lambda.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# A literal, so that setup.cfg (`attr: conveyor.__version__`) reads it without importing.
__version__ = "0.1.0"

if TYPE_CHECKING:
    from infra.errors import ConveyorError
    from producers.client import (
        ApiError,
        AuthError,
        BatchItemResult,
        Cancellation,
        Client,
        EnqueueError,
        EnqueueResult,
        JobStatus,
        NotCancelledError,
        NotFoundError,
        Retry,
        WaitTimeoutError,
    )
    from workers.api import JobContext, PermanentError, RetryLater
    from workers.lambda_adapter import lambda_handler

#: Each public name and the module it lives in.
_EXPORTS = {
    "ConveyorError": "infra.errors",
    "JobContext": "workers.api",
    "PermanentError": "workers.api",
    "RetryLater": "workers.api",
    "lambda_handler": "workers.lambda_adapter",
    "Client": "producers.client",
    "Retry": "producers.client",
    "EnqueueResult": "producers.client",
    "BatchItemResult": "producers.client",
    "JobStatus": "producers.client",
    "ApiError": "producers.client",
    "EnqueueError": "producers.client",
    "AuthError": "producers.client",
    "NotFoundError": "producers.client",
    "NotCancelledError": "producers.client",
    "Cancellation": "producers.client",
    "WaitTimeoutError": "producers.client",
}

__all__ = [
    "ApiError",
    "AuthError",
    "BatchItemResult",
    "Cancellation",
    "Client",
    "ConveyorError",
    "EnqueueError",
    "EnqueueResult",
    "JobContext",
    "JobStatus",
    "NotCancelledError",
    "NotFoundError",
    "PermanentError",
    "Retry",
    "RetryLater",
    "WaitTimeoutError",
    "__version__",
    "lambda_handler",
]


# Hidden from type checkers, which see the imports above instead: a misspelt name is
# then an error to them rather than a module __getattr__'s Any.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # resolved once: later reads skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_EXPORTS))
