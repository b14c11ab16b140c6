"""The producer side: the HTTP API that validates and publishes jobs, and its client.

The API (:mod:`producers.app`) runs each job through one pipeline
(:mod:`producers.enqueue`: idempotency claim, claim check, publish, ledger) behind
API keys and rate limits; :mod:`producers.client` is its Python client. Names are
imported lazily, so that ``from producers.client import Client`` does not pull in
FastAPI and boto3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producers.app import create_app
    from producers.client import (
        AuthError,
        BatchItemResult,
        Cancellation,
        Client,
        ConveyorClient,
        EnqueueError,
        EnqueueResult,
        JobStatus,
        NotCancelledError,
        NotFoundError,
        Retry,
        WaitTimeoutError,
    )
    from producers.publisher import Publisher, PublishError
    from producers.serve import serve

_EXPORTS = {
    "create_app": "producers.app",
    "AuthError": "producers.client",
    "BatchItemResult": "producers.client",
    "Client": "producers.client",
    "ConveyorClient": "producers.client",
    "EnqueueError": "producers.client",
    "EnqueueResult": "producers.client",
    "JobStatus": "producers.client",
    "NotFoundError": "producers.client",
    "NotCancelledError": "producers.client",
    "Cancellation": "producers.client",
    "Retry": "producers.client",
    "WaitTimeoutError": "producers.client",
    "Publisher": "producers.publisher",
    "PublishError": "producers.publisher",
    "serve": "producers.serve",
}

__all__ = [
    "AuthError",
    "BatchItemResult",
    "Cancellation",
    "Client",
    "ConveyorClient",
    "EnqueueError",
    "EnqueueResult",
    "JobStatus",
    "NotCancelledError",
    "NotFoundError",
    "PublishError",
    "Publisher",
    "Retry",
    "WaitTimeoutError",
    "create_app",
    "serve",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'producers' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
